"""The full-text index: Whoosh (whoosh-reloaded), derived from SQLite and rebuildable from it at any time.

It answers one question, "which image ids match these words in this guild", unscored; SQLite does every
other filter, the sorting and the paging (performance.md: Whoosh is fast at a million images only when it
is asked to do little). Writes are batched into one commit. Everything here blocks: the catalog calls it
from its own thread. Keep this interface small so another engine (FTS5, tantivy) can take Whoosh's place.

Only what never changes after an image is added is indexed (words, names, numbers of its generation): ratings,
deletion and chat messages live in SQLite alone, so changing them never waits for the index. Writers of all
processes queue for one lock (`catalog/index_lock.py`, beside the folder) before Whoosh's own. An index that
cannot be opened is not an error here: `damage` says why, and the catalog rebuilds it (catalog/derived.py).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path

from whoosh import fields, index, query
from whoosh.analysis import StandardAnalyzer

from catalog.index_lock import held
from catalog.keywords import And, Node, Not, Or, Term
from catalog.records import ImageRecord, NegativeMode, searched_columns
from core.files import replace_folder

WRITE_LOCK_S = 30.0  # wait this long for another process's index writer (an import beside the bot)
REBUILD_LOCK_S = 600.0  # a rebuild waits longer: it must not run beside another one

# Keep stop words: "a", "on", "the" are real parts of prompts people search for.
ANALYZER = StandardAnalyzer(stoplist=None, minsize=1)

# Numbers are indexed as one term each (shift_step=0): only exact seeds are looked up, and the 16 tiered terms
# per 64-bit number Whoosh writes by default were most of the postings.
# Single-value fields are comma-separated KEYWORDs with `scorable` on: whoosh-reloaded looks for a length
# column on disk once per posting of a field that has none, which made bulk loads 20× slower.
SCHEMA = fields.Schema(
    id=fields.NUMERIC(
        int, shift_step=0, bits=64, stored=True, unique=True, sortable=True, signed=False, default=0
    ),
    guild=fields.KEYWORD(commas=True, scorable=True),
    prompt=fields.TEXT(analyzer=ANALYZER, phrase=True),
    negative=fields.TEXT(analyzer=ANALYZER, phrase=True),
    # The rest of the infotext: its parameter line ("Steps: 20, Sampler: Euler a, …"); the prompts are above.
    infotext=fields.TEXT(analyzer=ANALYZER, phrase=True),
    filename=fields.TEXT(analyzer=ANALYZER, phrase=False),
    model=fields.KEYWORD(commas=True, scorable=True),
    sampler=fields.KEYWORD(commas=True, scorable=True),
    networks=fields.KEYWORD(lowercase=True, commas=True, scorable=True),
    author=fields.KEYWORD(commas=True, scorable=True),
    # Floats are kept as scaled integers: whoosh-reloaded cannot make a sortable column of a float field.
    created=fields.NUMERIC(int, shift_step=0, bits=64, sortable=True, default=0),  # milliseconds since 1970
    seed=fields.NUMERIC(int, shift_step=0, bits=64, sortable=True, default=0),
    steps=fields.NUMERIC(int, shift_step=0, sortable=True, default=0),
    cfg=fields.NUMERIC(int, shift_step=0, sortable=True, default=0),  # CFG scale × 100
)


class WhooshIndex:
    """The Whoosh index in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock_path = lock_path(folder)
        self.damage: str | None = None  # why the index could not be opened (None: it opened)
        self._index = None
        try:
            if index.exists_in(str(folder)):
                self._index = index.open_dir(str(folder))
            else:
                folder.mkdir(parents=True, exist_ok=True)
                self._index = index.create_in(str(folder), SCHEMA)
        except Exception as exc:  # noqa: BLE001 (a damaged index fails in many ways: all mean "rebuild")
            self.damage = f"{type(exc).__name__}: {exc}"
        self._searcher = None
        self._ids_by_docnum: array | None = None
        self._wrote = False

    def close(self) -> None:
        try:
            if self._searcher is not None:
                self._searcher.close()
            if self._index is not None:
                self._index.close()
        except Exception:  # noqa: BLE001 (closing a damaged index: nothing to keep)
            pass
        self._searcher = None

    def probe(self, expected: Iterable[int]) -> str | None:
        """None when the index opens, reads, and holds the documents of `expected` image ids (a sample of
        those SQLite says are indexed); otherwise what is wrong with it."""
        if self._index is None:
            return self.damage
        try:
            if self._searcher is None:  # (the ids column is read at the first search, as before)
                self._searcher = self._index.searcher()
                self._ids_by_docnum = None
            searcher = self._searcher
            for image_id in expected:
                if searcher.document_number(id=image_id) is None:
                    return f"image {image_id} is missing from it"
        except Exception as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {exc}"
        return None

    def _current(self):
        """A searcher over the latest commit (kept open between queries; reopened only after a write), and
        each document number's image id as a flat array."""
        if self._searcher is None:
            self._searcher = self._index.searcher()
            self._ids_by_docnum = None
        elif self._wrote or not self._searcher.up_to_date():  # (a delete-only commit looks up to date)
            self._searcher.close()
            self._searcher = self._index.searcher()
            self._ids_by_docnum = None
        self._wrote = False
        if self._ids_by_docnum is None:
            reader = self._searcher.reader()
            self._ids_by_docnum = (
                array("Q", reader.column_reader("id")) if reader.doc_count_all() else array("Q")
            )
        return self._searcher, self._ids_by_docnum

    # ----- writing -------------------------------------------------------------------------------------------
    def put(self, records: Iterable[ImageRecord]) -> int:
        """Add or replace these images' documents in one commit; returns how many. Waits in line for the
        writer lock at most WRITE_LOCK_S (then IndexBusy)."""
        documents = [document(record) for record in records]
        with held(self.lock_path, WRITE_LOCK_S):
            writer = self._index.writer(limitmb=256, timeout=WRITE_LOCK_S)
            try:
                for fields_of_one in documents:
                    writer.update_document(**fields_of_one)
            except BaseException:
                writer.cancel()
                raise
            writer.commit()
        self._wrote = True
        return len(documents)

    def bulk_load(self, records: Iterable[ImageRecord]) -> int:
        """Add documents known to be absent (a fresh index): faster than `put`, one commit."""
        writer = self._index.writer(limitmb=256, procs=1)
        count = 0
        for record in records:
            writer.add_document(**document(record))
            count += 1
        writer.commit()
        return count

    def optimize(self) -> None:
        """Merge the index's segments into one (scheduled; searches stay fast as images come and go)."""
        with held(self.lock_path, REBUILD_LOCK_S):
            self._index.writer(timeout=WRITE_LOCK_S).commit(optimize=True)
        self._wrote = True

    def remove(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with held(self.lock_path, WRITE_LOCK_S):
            writer = self._index.writer(timeout=WRITE_LOCK_S)
            for image_id in ids:
                writer.delete_by_term("id", image_id)
            writer.commit()
        self._wrote = True

    # ----- reading -------------------------------------------------------------------------------------------
    def ids(self) -> set[int]:
        """Every image id in the index (for the integrity check)."""
        searcher, ids = self._current()
        return {ids[docnum] for docnum in searcher.reader().all_doc_ids()}

    def postings(self) -> set[tuple[str, str, int]]:
        """Every (field, word, image id) of the index: two indexes with equal postings answer alike."""
        with self._index.searcher() as searcher:
            reader = searcher.reader()
            column = reader.column_reader("id")
            found = set()
            for field_name, word in reader.all_terms():
                if field_name == "id":
                    continue
                text = word.decode("utf-8", "replace") if isinstance(word, bytes) else str(word)
                for docnum in reader.postings(field_name, word).all_ids():
                    found.add((field_name, text, int(column[docnum])))
            return found

    def matching_ids(self, node: Node, negative: NegativeMode) -> list[int]:
        """Ids of the images whose words match the expression (whole words, any case), in any guild: the
        catalog's SQL keeps the guild's (one filter less here is faster at a million documents)."""
        searcher, ids = self._current()
        return [ids[docnum] for docnum in to_whoosh(node, negative).docs(searcher)]


def lock_path(folder: Path) -> Path:
    """The writer lock of the index in `folder` (beside it: a rebuild swaps the folder)."""
    return folder.with_name(folder.name + ".lock")


def rebuild(folder: Path, records: Iterable[ImageRecord]) -> int:
    """Build a new index beside `folder` from `records`, then swap it in; returns the documents written.
    Holds the writer lock throughout, so writers of other processes wait and two rebuilds never mix."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    written = []

    def build(fresh: Path) -> None:
        built = WhooshIndex(fresh)
        written.append(built.bulk_load(records))
        built.close()

    with held(lock_path(folder), REBUILD_LOCK_S):
        replace_folder(folder, build)
    return written[0]


def document(record: ImageRecord) -> dict:
    return {
        "id": record.id,
        "guild": record.guild,
        "prompt": record.prompt,
        "negative": record.negative_prompt,
        "infotext": record.params,
        "filename": record.filename,
        "model": (record.model or "").lower(),
        "sampler": (record.sampler or "").lower(),
        "networks": ",".join(record.networks),
        "author": record.author,
        "created": round(record.created * 1000),
        "seed": record.seed if record.seed is not None and record.seed >= 0 else 0,
        "steps": record.steps or 0,
        "cfg": round((record.cfg or 0.0) * 100),
    }


def _text_fields(negative: NegativeMode) -> tuple[str, ...]:
    names = {
        "prompt": "prompt",
        "negative_prompt": "negative",
        "params": "infotext",
    }  # this index's field names
    return tuple(names[column] for column in searched_columns(negative))


def _words(field: str, text: str) -> query.Query:
    """A word (with * or ? wildcards) or a phrase of the analysed words of `text`, in one field."""
    if any(c in text for c in "*?") and " " not in text.strip():
        return query.Wildcard(field, text.lower())
    words = [token.text for token in ANALYZER(text)]
    if not words:
        return query.NullQuery
    if len(words) == 1:
        return query.Term(field, words[0])
    return query.Phrase(field, words)


def to_whoosh(node: Node, negative: NegativeMode) -> query.Query:
    if isinstance(node, And):
        return query.And([to_whoosh(item, negative) for item in node.items])
    if isinstance(node, Or):
        return query.Or([to_whoosh(item, negative) for item in node.items])
    if isinstance(node, Not):
        return query.And([query.Every(), query.Not(to_whoosh(node.item, negative))])
    return _term(node, negative)


def _term(term: Term, negative: NegativeMode) -> query.Query:
    if term.field is None:
        return query.Or([_words(name, term.text) for name in _text_fields(negative)])
    if term.field == "neg":
        return _words("negative", term.text)
    if term.field == "seed":
        try:
            seed = int(term.text)
        except ValueError:
            return query.NullQuery
        return query.NumericRange("seed", seed, seed)
    if term.field == "lora":
        value = f"lora:{term.text.lower()}"
        return query.Wildcard("networks", value) if "*" in value else query.Term("networks", value)
    value = term.text.lower()  # model, sampler: the whole name, any case (wildcards allowed)
    return (
        query.Wildcard(term.field, value) if any(c in value for c in "*?") else query.Term(term.field, value)
    )
