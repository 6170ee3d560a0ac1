"""The demo's last act: a brand-new item ranked by its text, with the reasons the list gives.

Runs against a ranking job that is already serving (the replay's), in four steps:

1. swap the job to a content-aware model (announced on model-updates, as in production);
2. start the item-embedding job and publish the catalog on item-catalog, so every item has a vector;
3. announce one item no model has ever seen (its text made from the demo user's latest item);
4. ask for the user's list until the new item is scored from its text: the time from its catalog
   record to that list is what "rankable within seconds" means; print the list and its reasons.

Nothing here is MovieLens-specific: any catalog of `CatalogItem`s and any user history will do.
"""
from __future__ import annotations

import logging
import time
import uuid
from contextlib import ExitStack, closing
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from jobs.config import ItemEmbedConfig
from jobs.kafka_io import Producer, TopicReader, produce
from models.artifact import load_artifact
from udfs.embeddings import CatalogItem

log = logging.getLogger("replay.new_item")


@dataclass(frozen=True)
class DemoTopics:
    """The running ranking job's topics, and the item topics it reads embeddings from."""

    requests: str
    output: str
    model_updates: str
    catalog: str
    embeddings: str
    dead_letters: str


def new_item_like(item: CatalogItem, run_id: str) -> CatalogItem:
    """An item outside every vocabulary whose text resembles `item` (a sequel, say)."""
    return CatalogItem(item_id=f"new-{run_id}", title=f"{item.title}: The Sequel", categories=item.categories)


def _ask(producer: Producer, out: TopicReader, topics: DemoTopics, user: str, candidates: list[str],
         predicate: Callable[[dict], bool], timeout_s: float) -> dict | None:
    """Request the user's list every 250 ms until one satisfies `predicate`; that record, or None."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rid = f"demo-{uuid.uuid4().hex[:8]}"
        producer.send(topics.requests, user, {"request_id": rid, "user_id": user, "candidates": candidates,
                                              "k": len(candidates), "ts": int(time.time() * 1000)})
        producer.flush()
        for r in out.poll(timeout_ms=250):
            if r["value"].get("user_id") == user and predicate(r["value"]):
                return r
    return None


def show_new_item(bootstrap: str, topics: DemoTopics, model_dir: str, catalog: Sequence[CatalogItem],
                  user: str, history: Sequence[str], stack: ExitStack, embed_cfg: ItemEmbedConfig,
                  n_candidates: int = 20, seed: int = 0, timeout_s: float = 180.0) -> dict[str, Any]:
    """Steps 1-4 above; returns what was measured and shown (written into the replay's online.json)."""
    from jobs.item_embed_job import running as embedding_job
    from jobs.replay import announce_split

    artifact = load_artifact(model_dir)
    if not artifact.config.get("text"):
        raise ValueError(f"{model_dir} is ID-only: a new item can only be ranked by a content-aware model")
    model = f"{artifact.name}/{artifact.version}"
    by_id = {c.item_id: c for c in catalog}
    latest = by_id[next(i for i in reversed(history) if i in by_id)]
    new = new_item_like(latest, uuid.uuid4().hex[:6])
    rng = np.random.default_rng(seed)
    seen = set(history)
    pool = [c.item_id for c in catalog if c.item_id not in seen]
    candidates = [str(x) for x in rng.choice(pool, size=n_candidates - 1, replace=False)] + [new.item_id]
    titles = {c.item_id: c.title for c in catalog} | {new.item_id: new.title}

    out = stack.enter_context(closing(TopicReader(bootstrap, topics.output)))
    producer = stack.enter_context(closing(Producer(bootstrap)))
    announce_split(bootstrap, topics.model_updates, f"content={model_dir}:1.0", stack)
    t0 = time.monotonic()
    if _ask(producer, out, topics, user, candidates, lambda v: v["model_version"] == model, timeout_s) is None:
        raise TimeoutError(f"the job did not swap to {model} within {timeout_s:.0f} s")
    swap_s = time.monotonic() - t0
    log.info("serving %s after %.1f s", model, swap_s)

    stack.enter_context(embedding_job(embed_cfg))
    t0 = time.monotonic()
    produce(bootstrap, topics.catalog, [(c.item_id, {"item_id": c.item_id, "title": c.title,
                                                     "categories": list(c.categories)}) for c in catalog])
    # Every catalog vector on item-embeddings first: a new item announced earlier would queue behind
    # the catalog's backlog in the encoder, and the time measured below would be the backlog's.
    vectors = stack.enter_context(closing(TopicReader(bootstrap, topics.embeddings)))
    vectors.read_until(lambda rs: len({r["key"] for r in rs}) >= len(catalog), timeout_s, settle_s=0)
    if len({r["key"] for r in vectors.records}) < len(catalog):
        raise TimeoutError(f"the catalog's {len(catalog)} items were not embedded within {timeout_s:.0f} s")
    embed_s = time.monotonic() - t0
    # ... and the scorer has them once the list's known items get history-based reasons.
    known = set(candidates[:-1])
    warm = _ask(producer, out, topics, user, candidates,
                lambda v: any(i.get("reason", {}).get("kind") == "similar" for i in v["items"]
                              if i["item_id"] in known), timeout_s)
    if warm is None:
        raise TimeoutError(f"no list used the catalog's embeddings within {timeout_s:.0f} s")
    catalog_s = time.monotonic() - t0
    log.info("%d catalog items embedded in %.1f s, in the scorer after %.1f s", len(catalog), embed_s, catalog_s)

    announced = int(time.time() * 1000)
    producer.send(topics.catalog, new.item_id, {"item_id": new.item_id, "title": new.title,
                                                "categories": list(new.categories)}, timestamp_ms=announced)
    producer.flush()
    ranked = _ask(producer, out, topics, user, candidates,
                  lambda v: any(i["item_id"] == new.item_id and i.get("reason", {}).get("by_content")
                                for i in v["items"]), timeout_s)
    if ranked is None:
        raise TimeoutError(f"{new.item_id} was not scored by content within {timeout_s:.0f} s")
    vectors.read_until(lambda rs: any(r["key"] == new.item_id for r in rs), timeout_s, settle_s=0)
    emitted = next(r["value"]["emitted_at"] for r in vectors.records if r["key"] == new.item_id)
    items = ranked["value"]["items"]
    rank = next(n for n, i in enumerate(items, 1) if i["item_id"] == new.item_id)
    return {
        "model": model, "user": user, "history_len": len(history), "latest_item": latest.title,
        "new_item": {"item_id": new.item_id, "title": new.title, "categories": list(new.categories)},
        "rankable_ms": ranked["received_at"] - announced, "embedded_ms": emitted - announced,
        "rank": rank, "candidates": len(candidates),
        "swap_s": round(swap_s, 1), "catalog_items": len(catalog), "catalog_embedded_s": round(embed_s, 1),
        "catalog_in_scorer_s": round(catalog_s, 1),
        "list": [{"item_id": i["item_id"], "title": titles.get(i["item_id"], i["item_id"]),
                  "score": i["score"], "reason": _titled(i.get("reason", {}), titles)} for i in items[:10]],
    }


def _titled(reason: dict, titles: dict[str, str]) -> dict:
    """The reason with its `because` item id spelled as a title, for people to read."""
    because = reason.get("because")
    return reason | {"because_title": titles.get(because, because)} if because else dict(reason)


def print_new_item(result: dict[str, Any]) -> None:
    """The demo's printout of `show_new_item`."""
    n = result["new_item"]
    print(f"\nnew item, ranked by content ({result['model']}): {n['title']!r} {n['categories']} "
          f"(made from the user's latest: {result['latest_item']!r})")
    print(f"item-catalog record -> first list scoring it from its text: {result['rankable_ms']} ms "
          f"(its vector was written after {result['embedded_ms']} ms); "
          f"ranked {result['rank']} of {result['candidates']} for user {result['user']} "
          f"({result['history_len']} events of history)")
    print(f"{'#':>3}  {'score':>7}  {'title':<48} reason")
    for pos, item in enumerate(result["list"], 1):
        r = item["reason"]
        text = r.get("text", "")
        if r.get("because_title"):  # the job knows ids only; spell the title here
            text = (f"new, like {r['because_title']}" if r.get("kind") == "new"
                    else f"because you watched {r['because_title']}")
        flag = " [by content]" if r.get("by_content") else ""
        print(f"{pos:>3}  {item['score']:>7.3f}  {item['title'][:48]:<48} {r.get('kind', '')}: {text}{flag}")


def embed_config(bootstrap: str, topics: DemoTopics, run_id: str, base: ItemEmbedConfig | None = None
                 ) -> ItemEmbedConfig:
    """The item-embedding job's settings for the demo's topics."""
    return replace(base or ItemEmbedConfig(), bootstrap_servers=bootstrap, catalog_topic=topics.catalog,
                   embeddings_topic=topics.embeddings, dead_letter_topic=topics.dead_letters,
                   group_id=f"demo-embed-{run_id}", job_name="item-embed-demo", checkpoint_interval_ms=1000)
