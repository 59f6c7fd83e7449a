"""Ranking and selection on a small fixture tree: lexical relevance, named identifiers and paths, the
graph, recency, included/excluded paths, and the budget (never exceeded, real token counts)."""

from __future__ import annotations

from forgefluid_context.parsing import parse_file
from forgefluid_context.ranking import IndexedFile, VersionIndex
from forgefluid_context.selection import glob_match, plan, render
from forgefluid_context.tokens import count_tokens

TREE: dict[str, str] = {
    "LICENSE": "MIT License\n" + "Permission is hereby granted, free of charge.\n" * 40,
    ".editorconfig": "root = true\n[*]\nindent_style = tab\n",
    "src/ledger.ts": (
        "import { Money } from './money';\n\n"
        "export function reserveCredits(balance: Money, amount: Money): Money {\n"
        "  if (amount > balance) throw new Error('insufficient credits');\n  return balance - amount;\n}\n\n"
        + "".join(f"export function helper{i}(x: number) {{\n  return x + {i};\n}}\n\n" for i in range(60))
    ),
    "src/money.ts": "export type Money = number;\nexport function formatMoney(m: Money) {\n  return String(m);\n}\n",
    "src/billing.ts": (
        "import { reserveCredits } from './ledger';\n\nexport function chargeTask(b: number) {\n"
        "  return reserveCredits(b, 1);\n}\n"
    ),
    "src/unrelated.ts": "export function paintWidget() {\n  return 'blue';\n}\n",
    "docs/nats-transporter.md": "# Transport\n\nHow packets are batched per event-loop turn.\n",
}


def build(tree: dict[str, str], changed: dict[str, int] | None = None) -> VersionIndex:
    files = []
    for path, text in sorted(tree.items()):
        facts = parse_file(path, text.encode(), count_tokens)
        files.append(IndexedFile(path, f"sha-{path}", len(text), facts, (changed or {}).get(path, 1)))
    return VersionIndex(files)


def texts(tree: dict[str, str]) -> dict[str, str]:
    return {f"sha-{p}": t for p, t in tree.items()}


def select(index: VersionIndex, query: str, budget: int, include=(), exclude=()):  # type: ignore[no-untyped-def]
    units, order = plan(index, query, budget, list(include), list(exclude), count_tokens)
    return render(index, units, order, budget, texts(TREE), count_tokens)


def paths_ranked(index: VersionIndex, query: str) -> list[str]:
    return [index.files[i].path for i in index.rank(query).order]


def test_lexical_relevance_beats_path_order() -> None:
    order = paths_ranked(build(TREE), "refuse to reserve credits when they are insufficient")
    assert "src/ledger.ts" in order[:2]
    assert "LICENSE" not in order[:3] and ".editorconfig" not in order[:3]


def test_a_named_identifier_ranks_its_definer_first() -> None:
    assert paths_ranked(build(TREE), "rename formatMoney")[0] == "src/money.ts"


def test_a_named_path_ranks_that_file() -> None:
    assert paths_ranked(build(TREE), "update nats-transporter docs")[0] == "docs/nats-transporter.md"


def test_the_graph_brings_the_callers_of_what_matched() -> None:
    order = paths_ranked(build(TREE), "reserveCredits")
    assert order.index("src/billing.ts") < len(order)
    assert "src/unrelated.ts" not in order


def test_recency_breaks_ties_towards_recent_changes() -> None:
    tree = {"a/x.ts": "export function load() {}\n", "b/x.ts": "export function load() {}\n"}
    old_first = paths_ranked(build(tree, {"a/x.ts": 1, "b/x.ts": 9}), "load")
    assert old_first[0] == "b/x.ts"


def test_long_files_give_their_relevant_definitions_with_line_ranges() -> None:
    index = build(TREE)
    frames, used = select(index, "reserveCredits insufficient credits", 300)
    assert used <= 300
    ledger = [f for f in frames if f.get("path") == "src/ledger.ts"]
    assert ledger and ledger[0]["kind"] == "definitions"
    start, end = ledger[0]["lines"]
    assert start <= 3 <= end < index.files[index.by_path["src/ledger.ts"]].facts.lines  # type: ignore[union-attr]
    assert "reserveCredits" in ledger[0]["text"]


def test_the_budget_is_never_exceeded_and_tokens_add_up() -> None:
    index = build(TREE)
    for budget in (1, 10, 50, 120, 500, 2000, 100_000):
        frames, used = select(index, "credits money billing", budget)
        assert used <= budget
        assert used == sum(f["tokens"] for f in frames)
        for f in frames:
            if f["kind"] != "map":
                assert f["tokens"] >= count_tokens(f["text"])


def test_whole_files_where_they_fit_then_a_map() -> None:
    frames, _ = select(build(TREE), "formatMoney", 5000)
    kinds = {f.get("path"): f["kind"] for f in frames}
    assert kinds["src/money.ts"] == "file"
    assert frames[-1]["kind"] == "map"
    assert "src/unrelated.ts: paintWidget" in frames[-1]["text"]


def test_included_paths_come_first_and_excluded_are_never_shown() -> None:
    frames, _ = select(build(TREE), "reserveCredits", 3000, include=["src/unrelated.ts"], exclude=["src/ledger.ts"])
    assert frames[0]["path"] == "src/unrelated.ts"
    assert all(f.get("path") != "src/ledger.ts" for f in frames)
    assert "src/ledger.ts" not in frames[-1]["text"]


def test_globs_that_match_nothing_give_the_ranked_context_and_excluding_all_gives_none() -> None:
    frames, _ = select(build(TREE), "reserveCredits", 3000, include=["nothing/**"])
    assert frames and frames[0]["path"] == "src/ledger.ts"
    assert select(build(TREE), "reserveCredits", 3000, exclude=["**"]) == ([], 0)


def test_glob_forms() -> None:
    assert glob_match("src/a/b.ts", ["src/**/*.ts"])
    assert glob_match("src/b.ts", ["src/**/*.ts"])
    assert glob_match("docs/x.md", ["docs/"])
    assert glob_match("deep/dir/README.md", ["**/*.md"])
    # the TS nodes' rules (src/context/globs.ts): `*` stays within a segment, directories by name
    assert not glob_match("deep/dir/README.md", ["*.md"])
    assert glob_match("README.md", ["*.md"])
    assert not glob_match("src/a/b.ts", ["src/*.ts"])
    for directory in ("src", "src/", "src/**", "./src"):
        assert glob_match("src/a/b.ts", [directory]), directory
        assert not glob_match("srcx/a.ts", [directory]), directory
    assert glob_match("src", ["src/**"])
    assert glob_match("a/x/y/b/c.ts", ["a/**/b/*.ts"]) and glob_match("a/b/c.ts", ["a/**/b/*.ts"])
    assert glob_match("src/b1.ts", ["src/b[0-9].ts"]) and not glob_match("src/b1.ts", ["src/b[!0-9].ts"])
    assert glob_match("a.b/c", ["a.b"]) and not glob_match("axb/c", ["a.b"])
    assert not glob_match("src/b.ts", ["*.py", "lib/"])


def test_an_empty_version_and_an_empty_query_are_fine() -> None:
    assert select(VersionIndex([]), "anything", 100) == ([], 0)
    frames, used = select(build(TREE), "", 200)
    assert used <= 200 and all(f["kind"] == "map" for f in frames)


NAMED_TREE: dict[str, str] = {
    "src/ai/report.ts": "export function sendOutcome(x: number) {\n  return x;\n}\n",
    "src/ai/router.ts": "export function pickProvider(x: number) {\n  return x;\n}\n",
    "src/tasks/report.md": "# notes\n",
    "src/orgs/store.ts": "export function loadTeam(id: string) {\n  return id;\n}\n",
    "src/users/store.ts": "export function loadPerson(id: string) {\n  return id;\n}\n",
    "src/users/throttle.ts": "export function limitAttempts(n: number) {\n  return n > 3;\n}\n",
    "test/unit/throttle.test.ts": "import { limitAttempts } from '../../src/users/throttle';\n",
    "docs/orgs.md": "# Organisations\n",
}


def test_a_path_tail_or_directory_in_the_query_names_those_files() -> None:
    index = build(NAMED_TREE)
    assert paths_ranked(index, "fix ai/report.ts")[0] == "src/ai/report.ts"
    assert paths_ranked(index, "fix src/ai/report")[0] == "src/ai/report.ts"
    assert set(paths_ranked(index, "everything in src/ai/ is slow")[:2]) == {"src/ai/report.ts", "src/ai/router.ts"}


def test_a_plain_word_that_is_a_stem_or_directory_names_those_files() -> None:
    order = paths_ranked(build(NAMED_TREE), "orgs: members can leave")
    assert set(order[:2]) == {"src/orgs/store.ts", "docs/orgs.md"}
    assert order.index("src/orgs/store.ts") < order.index("src/users/store.ts")


def test_words_written_apart_name_the_file_whose_stem_joins_them() -> None:
    tree = {
        "src/auth/api-key-cache.ts": "export const ttl = 10;\n",
        "src/auth/sessions.ts": "export function cacheKey(apiKey: string) {\n  return apiKey;\n}\n",
        "src/users/account_deletion.py": "def forget(user):\n    return user\n",
        "src/users/accounts.py": "def account(user):\n    return user\n",
    }
    index = build(tree)
    assert paths_ranked(index, "the api-key cache forgets revoked keys")[0] == "src/auth/api-key-cache.ts"
    assert paths_ranked(index, "account deletion keeps payments")[0] == "src/users/account_deletion.py"
    # stopwords alone join nothing
    assert "src/auth/api-key-cache.ts" not in paths_ranked(index, "and the of")


def test_a_test_follows_its_subject_through_the_shared_stem() -> None:
    tree = dict(NAMED_TREE)
    tree["test/unit/throttle.test.ts"] = "// see the subject\n"  # no import, no shared word: only the stem joins them
    index = build(tree)
    order = paths_ranked(index, "limitAttempts counts every attempt")
    assert order[0] == "src/users/throttle.ts"
    assert "test/unit/throttle.test.ts" in order[:3]
    without = VersionIndex([f for f in index.files if f.path != "src/users/throttle.ts"])
    assert "test/unit/throttle.test.ts" not in [without.files[i].path for i in without.rank("limitAttempts").order]


def test_a_larger_budget_shows_at_least_the_relevant_definitions_a_smaller_one_did() -> None:
    index = build(TREE)
    shown: list[set[tuple[str, int]]] = []
    for budget in (300, 1000, 4000):
        frames, _ = select(index, "reserveCredits insufficient credits", budget)
        shown.append(
            {(f["path"], ln) for f in frames if f["kind"] != "map" for ln in range(f["lines"][0], f["lines"][1] + 1)}
        )
    # the definition of reserveCredits (lines 3-6 of src/ledger.ts) at every budget, more of the file at more
    for lines in shown:
        assert {("src/ledger.ts", ln) for ln in range(3, 7)} <= lines
    ledger = [{ln for p, ln in lines if p == "src/ledger.ts"} for lines in shown]
    assert ledger[0] <= ledger[1] <= ledger[2] and len(ledger[2]) > len(ledger[0])


def test_adjacent_chunks_of_a_file_share_one_header() -> None:
    step = "export function creditStep{0}(x: number) {{\n  return x + {0}; // credit\n}}\n\n"
    body = "".join(step.format(i) for i in range(6)).rstrip("\n") + "\n"
    tree = {"src/steps.ts": body}
    index = build(tree)
    f = index.files[0]
    assert f.facts is not None and len(f.facts.chunks) > 3
    # room for the chunks, one header and a token per join: no room for a header per chunk
    budget = sum(c.tokens for c in f.facts.chunks) + count_tokens(f.path) + 8 + len(f.facts.chunks) + 2
    units, order = plan(index, "credit steps", budget, [], [], count_tokens)
    frames, used = render(index, units, order, budget, texts(tree), count_tokens)
    assert used <= budget
    content = [fr for fr in frames if fr["kind"] != "map"]
    assert len(content) == 1 and content[0]["kind"] == "file" and content[0]["lines"] == [1, f.facts.lines]


SCOPED: dict[str, str] = {
    "src/ledger/reserve.ts": (
        "export function reserveAmount(balance: number, amount: number) {\n"
        "  // reserve the amount: a reserve holds the amount until it is settled\n"
        "  return balance - amount;\n}\n"
    ),
    "src/billing/charge.ts": (
        "import { reserveAmount } from '../ledger/reserve';\n\n"
        "export function chargeCard(card: string, cents: number) {\n  return reserveAmount(0, cents);\n}\n"
    ),
    "src/ledger/reserve.spec.ts": (
        "import { reserveAmount } from './reserve';\n\n"
        "it('keeps the rest', () => expect(reserveAmount(3, 1)).toBe(2));\n"
    ),
    "docs/billing.md": "# Billing\n\nA card is charged after the amount is reserved.\n",
}


def test_subject_of_reads_commit_style_scopes() -> None:
    from forgefluid_context.ranking import subject_of

    assert subject_of("test(tasks): settle passes tokens") == ("test", ["tasks"])
    assert subject_of("feat(api, ui)!: new route") == ("feat", ["api", "ui"])
    assert subject_of("net/http: reuse connections") == (None, ["net/http"])
    assert subject_of("payments: hold leases") == (None, ["payments"])
    assert subject_of("fix: a typo") == ("fix", [])
    assert subject_of("reserve the amount: then charge") == (None, [])
    assert subject_of("no subject here") == (None, [])


def test_a_commit_scope_puts_its_component_first() -> None:
    index = build(SCOPED)
    # the ledger wins on words and the named identifier; the subject names the billing component
    assert paths_ranked(index, "reserveAmount holds the reserve amount")[0] == "src/ledger/reserve.ts"
    assert paths_ranked(index, "billing: reserveAmount holds the reserve amount")[0].startswith(
        ("src/billing/", "docs/billing")
    )
    # a directory path as the scope (Go style) works the same
    assert paths_ranked(index, "src/billing: reserveAmount holds the reserve amount")[0] == "src/billing/charge.ts"


def test_a_conventional_test_type_favours_test_files() -> None:
    index = build(SCOPED)
    query = "reserve the amount and hold the reserve amount"
    assert paths_ranked(index, query)[0] == "src/ledger/reserve.ts"
    assert paths_ranked(index, "test: " + query)[0] == "src/ledger/reserve.spec.ts"
    assert paths_ranked(index, "test(ledger): " + query)[0] == "src/ledger/reserve.spec.ts"


def test_the_best_small_files_are_shown_whole() -> None:
    # quota.ts ranks first; its second function shares no word with the query, and ten other files'
    # matching functions would outbid it for the budget
    tree = {
        "src/quota.ts": (
            "export function checkQuota(used: number, quota: number) {\n  return used < quota;\n}\n\n"
            + "".join(f"export function resetWindow{k}(now: number) {{\n  return now - {k};\n}}\n\n" for k in range(8))
        ),
        **{
            f"src/other{k}.ts": (
                f"export function quotaOf{k}(n: number) {{\n  return n * {k};\n}}\n\n"
                + "".join(f"export function pad{k}_{j}(n: number) {{\n  return n + {j};\n}}\n\n" for j in range(12))
            )
            for k in range(10)
        },
    }
    files = [
        IndexedFile(p, f"sha-{p}", len(t), parse_file(p, t.encode(), count_tokens), 1) for p, t in sorted(tree.items())
    ]
    index = VersionIndex(files)
    query = "checkQuota: refuse when the quota is used up"
    assert index.files[index.rank(query).order[0]].path == "src/quota.ts"
    units, order = plan(index, query, 3000, [], [], count_tokens)
    frames, used = render(index, units, order, 3000, {f"sha-{p}": t for p, t in tree.items()}, count_tokens)
    assert used <= 3000
    quota = [f for f in frames if f.get("path") == "src/quota.ts"]
    assert [f["kind"] for f in quota] == ["file"]


def test_a_file_is_shown_around_its_match_before_lower_files_get_their_matches() -> None:
    # settle.ts ranks first and is too large for the budget; its matching function sits at the end,
    # after 40 that share no word with the query. Twelve lower files each hold a small matching
    # function too. The best file's share goes to its match and the lines around it (a change to
    # settleLedger tends to touch its neighbours), not to the top of the file nor to every lower match
    tree = {
        "src/settle.ts": (
            "".join(f"export function stepWindow{k}(now: number) {{\n  return now - {k};\n}}\n\n" for k in range(40))
            + "export function settleLedger(entries: number[]) {\n  // settle the ledger entries\n"
            "  return entries.reduce((a, b) => a + b, 0);\n}\n"
        ),
        **{
            f"src/part{k}.ts": (
                f"export function settleLedgerPart{k}(n: number) {{\n  return n * {k};\n}}\n\n"
                + "".join(f"export function pad{k}_{j}(n: number) {{\n  return n + {j};\n}}\n\n" for j in range(12))
            )
            for k in range(12)
        },
    }
    files = [
        IndexedFile(p, f"sha-{p}", len(t), parse_file(p, t.encode(), count_tokens), 1) for p, t in sorted(tree.items())
    ]
    index = VersionIndex(files)
    query = "settleLedger: settle the ledger entries"
    assert index.files[index.rank(query).order[0]].path == "src/settle.ts"
    budget = 600
    units, order = plan(index, query, budget, [], [], count_tokens)
    frames, used = render(index, units, order, budget, {f"sha-{p}": t for p, t in tree.items()}, count_tokens)
    assert used <= budget
    settle = {ln for f in frames if f.get("path") == "src/settle.ts" for ln in range(f["lines"][0], f["lines"][1] + 1)}
    last = tree["src/settle.ts"].count("\n")
    match = set(range(last - 4, last + 1))
    around = set(range(last - 24, last - 4))  # stepWindow35..39, right before it
    assert match <= settle and around <= settle


def test_the_budget_reaches_the_matches_of_files_further_down_the_ranking() -> None:
    # four ledger files rank first and could take the whole budget; each lower file holds one small
    # function matching the query. A share per file in rank order leaves room for more of the lower
    # files' matches than letting every chunk compete (which fills the best files first: at this
    # budget it shows the matches of part0..part3 only)
    tree: dict[str, str] = {}
    for k in range(4):
        tree[f"src/ledger{k}.ts"] = (
            f"export function settleLedger{k}(entries: number[]) {{\n"
            f"  // settle the ledger entries {'ledger ' * (6 - k)}\n  return entries.length;\n}}\n\n"
            + "".join(
                f"export function stepWindow{k}_{j}(now: number) {{\n  return now - {j};\n}}\n\n" for j in range(10)
            )
        )
    for k in range(12):
        tree[f"src/part{k}.ts"] = (
            f"export function settleEntries{k}(n: number) {{\n  // settle entries\n  return n * {k};\n}}\n\n"
            + "".join(f"export function pad{k}_{j}(n: number) {{\n  return n + {j};\n}}\n\n" for j in range(12))
        )
    files = [
        IndexedFile(p, f"sha-{p}", len(t), parse_file(p, t.encode(), count_tokens), 1) for p, t in sorted(tree.items())
    ]
    index = VersionIndex(files)
    query = "settle the ledger entries"
    assert [index.files[i].path for i in index.rank(query).order[:4]] == [f"src/ledger{k}.ts" for k in range(4)]
    budget = 1200
    units, order = plan(index, query, budget, [], [], count_tokens)
    frames, used = render(index, units, order, budget, {f"sha-{p}": t for p, t in tree.items()}, count_tokens)
    assert used <= budget
    shown = {(f["path"], ln) for f in frames if f["kind"] != "map" for ln in range(f["lines"][0], f["lines"][1] + 1)}
    for k in range(4):
        assert {(f"src/ledger{k}.ts", ln) for ln in range(1, 5)} <= shown
    reached = [k for k in range(12) if {(f"src/part{k}.ts", ln) for ln in range(1, 5)} <= shown]
    assert len(reached) >= 5 and reached[:4] == [0, 1, 2, 3]
