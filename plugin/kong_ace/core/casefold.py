"""The case-folded reading of a path (SPEC §8): Express and ASP.NET Core route ignoring case.

``GET /users/Export`` is getUser for a case-sensitive router (``{id}`` = ``Export``) and
exportUsers for a case-insensitive one; ``DELETE /Orders/1`` reaches nothing in a catalog that
spells ``/orders/{id}``, and deleteOrder upstream. Each API says how its upstream routes
(``path_case``): ``sensitive`` (no folded reading), ``insensitive`` (decide on the folded
reading) or ``unknown`` (the default: both readings must reach the same operation).
"""

from __future__ import annotations

from dataclasses import dataclass

from kong_ace.core.matcher import (
    PARAM_SEGMENT,
    Match,
    Matcher,
    Operation,
    Scope,
    _Node,
    parse_template,
)


class CaseConflict(ValueError):
    """Two templates fold to one under an API whose upstream routes ignoring case."""

    def __init__(self, api: str, message: str) -> None:
        super().__init__(message)
        self.api = api


@dataclass(frozen=True, slots=True)
class CaseReadings:
    """Lower-cased templates of every API not declared case-sensitive, compiled once."""

    matcher: Matcher
    insensitive: frozenset[int]  # uids of operations whose upstream routes ignoring case
    conflicts: frozenset[int]  # uids whose folded template is another operation's too
    # Lower-cased literal segments (and literal parts of partial segments) that hold an
    # upper-case letter: a lower-case path can read differently only if it contains one.
    upper_segments: frozenset[str] = frozenset()
    upper_parts: tuple[str, ...] = ()
    # When the folded index is the exact one (every API folds, no literal has a capital, no
    # conflict): its literal segments, and the pattern literals that hold a letter. A path then
    # reads differently once folded only where a segment holding a capital is, in lower case,
    # one of the words or contains one of the literals (see ``needed``). None otherwise.
    words: frozenset[str] | None = None
    lettered: tuple[str, ...] = ()

    @property
    def always(self) -> bool:
        """Whether even a lower-case path may reach another operation once folded."""
        return bool(self.upper_segments or self.upper_parts)

    def needed(self, path: str) -> bool:
        """Whether ``path`` may read differently once folded: no regex, no generator.

        lower() and == beat islower(), which crawls over 8 KB of '-'.
        """
        low = path.lower()
        if low != path:
            # Where both indexes are one trie, a segment with capitals that no literal reads in
            # lower case is read by the same parameter or pattern either way (ASCII only:
            # lower() keeps the length; see mirror_words).
            words = self.words
            if words is None or not path.isascii():
                return True
            changed = [f for s, f in zip(path.split("/"), low.split("/")) if s != f]  # noqa: B905
            if not words.isdisjoint(changed):
                return True
            for part in self.lettered:
                for folded in changed:
                    if part in folded:
                        return True
            return False
        for part in self.upper_parts:
            if part in path:
                return True
        segments = self.upper_segments
        if len(segments) > 4:
            return not segments.isdisjoint(path.split("/"))
        for segment in segments:  # noqa: SIM110 - a generator costs more than the test
            if segment in path:
                return True
        return False

    def resolve(self, exact: Match, folded: Match) -> Match | None:
        """The match to decide on given both readings, or None when they are ambiguous."""
        fo, eo = folded.operation, exact.operation
        conflicts = self.conflicts
        if fo is eo:
            return exact if eo is None or eo.uid not in conflicts else None
        if fo is None:
            # Not in the folded index: a case-sensitive API's operation (fine), or one whose
            # folded template another operation shares (ambiguous).
            return None if eo is not None and eo.uid in conflicts else exact
        insensitive = self.insensitive
        if fo.uid in insensitive and (eo is None or eo.uid in insensitive):
            return folded  # the upstream folds: its operation is the folded one
        return None


def fold_template(template: str) -> str:
    """``template`` with its literal text lower-cased; parameter names are not path text."""
    if "{" not in template:
        return template.lower()
    out, depth = [], 0
    for ch in template:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        out.append(ch if depth else ch.lower())
    return "".join(out)


def compile_case(apis: list[tuple[str, Scope, tuple[Operation, ...]]],
                 shape: dict[int, str], exact: Matcher | None = None) -> CaseReadings | None:
    """Index ``apis`` (path_case, scope, operations) folded; None if all are case-sensitive.

    ``shape``: each operation's template with its parameters as ``{}``, for spotting two
    templates that fold to the same one; ``exact``: the catalog's own index. Raises
    CaseConflict for an insensitive API.
    """
    matcher = Matcher()
    upper_segments: set[str] = set()
    upper_parts: set[str] = set()
    insensitive: set[int] = set()
    conflicts: set[int] = set()
    seen: dict[tuple[str, str, Scope], Operation] = {}
    indexed = False
    for path_case, scope, ops in apis:
        if path_case == "sensitive":
            continue
        for op in ops:
            indexed = True
            folded = fold_template(op.path)
            if folded != op.path:
                _collect_upper(op.path, upper_segments, upper_parts)
            if path_case == "insensitive":
                insensitive.add(op.uid)
            key = (op.method, shape[op.uid].lower(), scope)
            other = seen.get(key)
            if other is None:
                try:
                    matcher.add(op, scope, path=folded)
                    seen[key] = op
                    continue
                except ValueError:
                    other = op  # a tie with another folded template: ambiguous alone
            if path_case == "insensitive" or other.uid in insensitive:
                api = op.api if path_case == "insensitive" else other.api
                raise CaseConflict(api, f"'{op}' and '{other}' are the same operation to a "
                                        "case-insensitive upstream (path_case: insensitive)")
            conflicts.update((op.uid, other.uid))
    if not indexed:
        return None
    mirror = None
    if exact is not None and not conflicts and not upper_segments and not upper_parts:
        mirror = mirror_words(exact._root, matcher._root)
    return CaseReadings(matcher, frozenset(insensitive), frozenset(conflicts),
                        frozenset(upper_segments), tuple(sorted(upper_parts)),
                        *(mirror or (None, ())))


def mirror_words(exact: _Node, folded: _Node) -> tuple[frozenset[str], tuple[str, ...]] | None:
    """The literal segments of two identical tries and the pattern literals that hold a
    letter; None if the tries differ in anything a search reads or a literal has a capital.

    The folded search of a lower-cased ASCII path then takes the exact search's steps except
    where a segment holding a capital is, in lower case, one of the literal segments (a static
    child only the folded search takes) or contains a lettered pattern literal (a pattern only
    it may fill): a pattern literal without letters is found at the same places either way.
    """
    words: set[str] = set()
    lettered: set[str] = set()
    stack = [(exact, folded)]
    while stack:
        a, b = stack.pop()
        if a.static.keys() != b.static.keys() or len(a.patterns) != len(b.patterns) or (
                (a.param is None) != (b.param is None)) or a.endpoints != b.endpoints:
            return None
        for word, child in a.static.items():
            if word.lower() != word:
                return None
            words.add(word)
            stack.append((child, b.static[word]))
        for (pa, ca), (pb, cb) in zip(a.patterns, b.patterns, strict=True):
            if pa != pb or pa.shape.lower() != pa.shape:
                return None
            lettered.update(lit for lit in pa.literals if lit.upper() != lit)
            stack.append((ca, cb))
        if a.param is not None:
            stack.append((a.param, b.param))  # type: ignore[arg-type]
    return frozenset(words), tuple(sorted(lettered))


def _collect_upper(template: str, segments: set[str], parts: set[str]) -> None:
    for seg in parse_template(template):
        if isinstance(seg, str):
            if seg.lower() != seg:
                segments.add(seg.lower())
        elif seg is not PARAM_SEGMENT:
            parts.update(lit.lower() for lit in seg.literals if lit.lower() != lit)
