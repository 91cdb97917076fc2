"""Scale-out: which shard owns a user, and how a shard map is written.

The same rendezvous (highest-random-weight) hash as the C++ library
(client/include/presence/shard_map.h, docs/scale-out.md): every client, in
every language, must route a user to the same shard. Checked against
tests/testdata/shard_vectors.txt by both test suites.

    name_hash(name)    = FNV-1a 64 of the name's UTF-8 bytes
    mix(x)             = the SplitMix64 finaliser
    weight(name, user) = mix(name_hash(name) ^ mix(user as uint64))
    owner(user)        = the shard of largest weight; ties: smaller name
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

MASK = (1 << 64) - 1
MAX_SHARDS = 1024
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,63}$")


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def shard_name_hash(name: str) -> int:
    h = 0xCBF29CE484222325
    for byte in name.encode("utf-8"):
        h ^= byte
        h = (h * 0x100000001B3) & MASK
    return h


def shard_weight(name_hash: int, user_id: int) -> int:
    return _mix(name_hash ^ _mix(user_id & MASK))


@dataclass(frozen=True)
class Shard:
    name: str
    target: str = ""  # HOST:PORT; empty in a list of names


def _expand(text: str) -> List[str]:
    """`text` with its one {FIRST..LAST} range expanded."""
    if "{" not in text and "}" not in text:
        return [text]
    m = re.fullmatch(r"([^{}]*)\{(\d+)\.\.(\d+)\}([^{}]*)", text)
    if not m:
        raise ValueError(f'"{text}": a pattern has one range, {{FIRST..LAST}}, '
                         "e.g. presenced-{0..2}")
    first, last = int(m.group(2)), int(m.group(3))
    if first > last:
        raise ValueError(f'"{text}": the range must be {{FIRST..LAST}}, two '
                         "numbers with FIRST <= LAST, e.g. {0..2}")
    if last - first >= MAX_SHARDS:
        raise ValueError(f'"{text}": at most {MAX_SHARDS} shards')
    return [f"{m.group(1)}{i}{m.group(4)}" for i in range(first, last + 1)]


class ShardMap:
    """The shards of a deployment, parsed from what the client takes as
    presenced's address:

        HOST:PORT                           one unsharded presenced
        NAME=HOST:PORT,NAME=HOST:PORT,...   shards by name and address
        presenced-{0..2}.presenced.NS.svc:50051
                                            a DNS pattern; the host's first
                                            label names each shard
    """

    def __init__(self, shards: Sequence[Shard], sharded: bool = True):
        shards = list(shards)
        if not shards:
            raise ValueError("no shard given")
        if sharded:
            if len(shards) > MAX_SHARDS:
                raise ValueError(f"{len(shards)} shards; at most {MAX_SHARDS}")
            seen = set()
            for s in shards:
                if not _NAME.match(s.name):
                    raise ValueError(
                        f'shard name "{s.name}": a name is 1 to 63 letters, '
                        "digits, '-', '_' or '.'")
                if s.name in seen:
                    raise ValueError(f'shard "{s.name}" is named twice')
                seen.add(s.name)
        self.sharded = sharded
        self.shards = shards
        self._hashes = [shard_name_hash(s.name) for s in shards]

    @classmethod
    def parse(cls, spec: str) -> "ShardMap":
        spec = spec.strip()
        if not spec:
            raise ValueError(
                "no address: give HOST:PORT, NAME=HOST:PORT,... or a pattern "
                "such as presenced-{0..2}.presenced.NAMESPACE.svc:50051")
        if "=" in spec:
            shards = []
            for item in spec.split(","):
                name, eq, target = item.strip().partition("=")
                if not eq or not target.strip():
                    raise ValueError(f'"{item.strip()}": each shard is '
                                     "NAME=HOST:PORT")
                shards.append(Shard(name.strip(), target.strip()))
            return cls(shards)
        if "{" in spec or "}" in spec:
            addresses = _expand(spec)
            names = [re.split(r"[.:]", a, maxsplit=1)[0] for a in addresses]
            if len(set(names)) != len(names):
                raise ValueError(
                    f'"{spec}": the {{FIRST..LAST}} range must be in the '
                    "host's first label, which names each shard "
                    "(presenced-{0..2}.presenced...)")
            return cls([Shard(n, a) for n, a in zip(names, addresses)])
        return cls.single(spec)

    @classmethod
    def parse_names(cls, names: str) -> "ShardMap":
        shards = []
        for item in names.split(","):
            item = item.strip().partition("=")[0].strip()
            shards.extend(Shard(n) for n in _expand(item))
        return cls(shards)

    @classmethod
    def single(cls, target: str) -> "ShardMap":
        return cls([Shard("", target)], sharded=False)

    def __len__(self) -> int:
        return len(self.shards)

    def owner_index(self, user_id: int) -> int:
        best, best_weight = 0, shard_weight(self._hashes[0], user_id)
        for i in range(1, len(self.shards)):
            w = shard_weight(self._hashes[i], user_id)
            if w > best_weight or (w == best_weight and
                                   self.shards[i].name.encode() <
                                   self.shards[best].name.encode()):
                best, best_weight = i, w
        return best

    def owner(self, user_id: int) -> Shard:
        return self.shards[self.owner_index(user_id)]

    def index_of(self, name: str) -> Optional[int]:
        for i, s in enumerate(self.shards):
            if s.name == name:
                return i
        return None

    def __str__(self) -> str:
        if not self.sharded:
            return self.shards[0].target
        return ",".join(f"{s.name}={s.target}" if s.target else s.name
                        for s in self.shards)
