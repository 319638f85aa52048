"""The windowed aggregates of `livemon.engine.windows` against brute force, at the sizes where their
compact storage kicks in: a distinct-user window pruning the users gone out of it, latency buckets
kept as flat (bin, count) arrays once final (int16 when they fit, wider when not), and bucket
vectors narrowed once out of the window."""

import math
import random

from collections import Counter

from livemon.engine.state import FORMAT, VERSION, Obj, decode, encode
from livemon.engine.windows import BucketSums, DistinctWindow, GroupedDistinct, LatencySketch


def test_distinct_window_matches_brute_force_while_pruning():
    rng = random.Random(3)
    width, frontier = 5, 0
    window = DistinctWindow(width, frontier)
    added = []  # (user, bucket)
    pruned = False
    for _ in range(120):
        # A crowd that moves on: most users are seen a few buckets and never again.
        for _ in range(rng.randrange(0, 40)):
            user = f"u{rng.randrange(max(0, frontier * 8 - 60), frontier * 8 + 40)}"
            bucket = frontier + rng.randint(1, 3)
            window.add(user, bucket)
            added.append((user, bucket))
        window.advance()
        frontier += 1
        pruned = pruned or len(window.last) < len({u for u, b in added if b <= frontier})
        for t in range(frontier, frontier + 4):
            expected = {u for u, b in added if t - width < b <= t}
            assert window.count_at(t) == len(expected), t
            assert window.members_at(t) == expected, t
            asked = set(rng.sample(sorted({u for u, _ in added}), 5)) | {f"u{rng.randrange(frontier * 8 + 40)}"}
            assert window.count_among(asked, t) == len(expected & asked), t
    assert pruned  # users out of the window were dropped on the way


def test_grouped_window_finds_the_active_among_given_keys_as_brute_force():
    # What a room's conversions ask: which of these (column, payer) keys clicked in the window,
    # answered without listing every clicking key; pending buckets and pruning included.
    rng = random.Random(5)
    width, frontier = 5, 0
    window = GroupedDistinct(width, frontier)
    added = []  # ((group, user), bucket)
    for _ in range(80):
        for _ in range(rng.randrange(0, 30)):
            user = f"u{rng.randrange(max(0, frontier * 6 - 40), frontier * 6 + 30)}"
            groups = tuple(rng.sample(range(8), rng.randint(1, 3)))
            bucket = frontier + rng.randint(1, 3)
            window.add_groups(groups, user, bucket)
            added.extend(((group, user), bucket) for group in groups)
        window.advance()
        frontier += 1
        for t in range(frontier, frontier + 4):
            expected = {key for key, b in added if t - width < b <= t}
            asked = {(group, f"u{rng.randrange(frontier * 6 + 30)}") for group in range(8) for _ in range(6)}
            asked |= set(rng.sample(sorted(expected), min(10, len(expected))))
            assert window.active_among(asked, t) == expected & asked, t
            assert window.members_at(t) == expected, t
            assert {g: n for g, n in window.counts_at(t).items() if n} == Counter(g for g, _ in expected), t
            # A room's converted clickers per column: the payers' own keys, as the brute force.
            payers = {f"u{rng.randrange(frontier * 6 + 30)}" for _ in range(12)}
            wanted = Counter(group for group, user in expected if user in payers)
            assert window.count_users_among(payers, t) == wanted, t
            document = {"format": FORMAT, "version": VERSION, "w": Obj(GroupedDistinct).encode(window)}
            restored = Obj(GroupedDistinct).decode(decode(encode(document))["w"])
            assert restored.count_users_among(payers, t) == wanted, t  # its user index rebuilt


def nearest_rank_bins(values, q):
    indexes = sorted(LatencySketch.bin_of(v) for v in values)
    return LatencySketch.value_of(indexes[max(1, math.ceil(q * len(indexes))) - 1])


def test_latency_sketch_matches_brute_force_with_compact_final_buckets():
    rng = random.Random(5)
    width, frontier = 6, 100
    sketch = LatencySketch(width, frontier)
    added = []  # (value, bucket)
    kinds = set()
    for step in range(60):
        for _ in range(rng.randrange(0, 30)):
            # Zero values (a bin out of int16) now and then, and one bucket with a count over int16.
            value = 0.0 if rng.random() < 0.02 else rng.uniform(50, 9000)
            bucket = frontier + rng.randint(1, 3)
            sketch.add(value, bucket)
            added.append((value, bucket))
        if step == 30:
            for _ in range(40_000):
                sketch.add_bin(LatencySketch.bin_of(1000.0), frontier + 1)
            added += [(1000.0, frontier + 1)] * 40_000
        sketch.advance()
        frontier += 1
        kinds |= {type(bins).__name__ + getattr(bins, "typecode", "") for bins in sketch.buckets.values()}
        for t in range(frontier, frontier + 4):
            values = [v for v, b in added if t - width < b <= t]
            expected = [nearest_rank_bins(values, q) for q in (0.5, 0.95)] if values else [None, None]
            assert sketch.quantiles_at(t, (0.5, 0.95)) == expected, t
    assert kinds == {"dict", "bytes", "arrayi"}  # dict until final; int16 pairs frozen; int32 pairs


def test_bucket_sums_narrowed_out_of_the_window_read_the_same():
    rng = random.Random(7)
    width, keep, narrow = 4, 12, 2
    wide, narrowed = BucketSums(5, width, 0), BucketSums(5, width, 0)
    for frontier in range(40):
        for _ in range(rng.randrange(0, 6)):
            bucket, field, delta = frontier + rng.randint(1, 3), rng.randrange(5), rng.randint(1, 9)
            wide.at(bucket)[field] += delta
            narrowed.at(bucket)[field] += delta
        # The narrow fields of a bucket out of the window may still change (SHORT of a presence
        # that started there).
        old = frontier - width - 1
        if old in narrowed.buckets:
            wide.at(old)[1] += 1
            narrowed.at(old)[1] += 1
        wide.advance(keep)
        narrowed.advance(keep, narrow=narrow)
        for t in range(frontier + 1, frontier + 4):
            assert narrowed.vectors_at(t) == wide.vectors_at(t)
        for b in range(frontier + 1 - keep, frontier + 4):
            assert narrowed.get(b)[:narrow] == wide.get(b)[:narrow]
            if b > frontier + 1 - width:
                assert narrowed.get(b) == wide.get(b)
