package rerank.udf;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Arrays;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * PSEUDONYM(id, keySource): the first 16 bytes of HMAC-SHA256(key, UTF-8 id), as 32 hex characters.
 *
 * <p>keySource is "file:/path" (the key is the file's bytes, one trailing newline dropped) or
 * "env:NAME" (the key is that environment variable of the TaskManager, UTF-8). The key itself
 * never appears in the job graph, only where to find it. It runs in the JVM, before the stream is
 * keyed, so raw ids never become state keys; udfs/identity.py computes the same value in Python.
 */
public class Pseudonym extends ScalarFunction {
    private static final int MIN_KEY_BYTES = 16;
    private transient String source;
    private transient Mac mac;

    public String eval(String id, String keySource) throws Exception {
        if (id == null) {
            return null;
        }
        if (mac == null || !keySource.equals(source)) {
            mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(readKey(keySource), "HmacSHA256"));
            source = keySource;
        }
        byte[] digest = mac.doFinal(id.getBytes(StandardCharsets.UTF_8));
        StringBuilder hex = new StringBuilder(32);
        for (byte b : Arrays.copyOf(digest, 16)) {
            hex.append(String.format("%02x", b));
        }
        return hex.toString();
    }

    static byte[] readKey(String keySource) throws Exception {
        byte[] key;
        if (keySource.startsWith("file:")) {
            key = Files.readAllBytes(Paths.get(keySource.substring(5)));
            if (key.length > 0 && key[key.length - 1] == '\n') {
                key = Arrays.copyOf(key, key.length - 1);
            }
        } else if (keySource.startsWith("env:")) {
            String value = System.getenv(keySource.substring(4));
            if (value == null) {
                throw new IllegalStateException("pseudonymization key: environment variable "
                        + keySource.substring(4) + " is not set on this TaskManager");
            }
            key = value.getBytes(StandardCharsets.UTF_8);
        } else {
            throw new IllegalArgumentException("pseudonymization key source must be file:PATH or env:NAME");
        }
        if (key.length < MIN_KEY_BYTES) {
            throw new IllegalStateException("pseudonymization key from " + keySource + " has " + key.length
                    + " bytes; at least " + MIN_KEY_BYTES + " are required");
        }
        return key;
    }
}
