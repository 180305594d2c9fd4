"""A collection: one folder (`.tpsearch/`) holding a SQLite database and a FAISS file.

`Collection` is the Python API behind `tpsearch index`, `query` and `status`:

    from tpsearch.collection import Collection
    with Collection.locate(Path.cwd(), create=True) as col:
        print(col.index(["docs"]).line())
        for hit in col.query("how do I declare a path parameter?").hits:
            print(hit.path, hit.start_line, hit.score)

Indexing and querying live in `indexing.py` and `search.py`; this module finds the folder,
holds the open database, the loaded encoder and the in-memory vector index between calls, and
decides which encoder settings apply (stored ones, unless flags change them).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tpsearch.collection.locking import WriterLock
from tpsearch.collection.schema import DB_NAME
from tpsearch.collection.store import Store
from tpsearch.collection.vector_cache import VectorCache
from tpsearch.collection.vector_index import VectorPolicy
from tpsearch.collection.vector_settings import changed_fields, from_stored, gives_vectors
from tpsearch.engine.encoder import Encoder, fingerprint_of
from tpsearch.engine.settings import EncoderSettings
from tpsearch.errors import CollectionError, ModelLoadError

if TYPE_CHECKING:
    from tpsearch.analysis import ClusterSettings, DedupeReport, DedupeSettings
    from tpsearch.collection.analyses import ClusterOutcome, Level
    from tpsearch.collection.indexing import IndexSummary, Progress
    from tpsearch.collection.reading import IndexedText
    from tpsearch.collection.search import QueryResult
    from tpsearch.collection.status import Check, CollectionStatus

INDEX_DIR_NAME = ".tpsearch"
# Called with the settings; a factory that also takes a `phase` keyword hears of slow one-time
# steps of loading (checking, assembling or converting a model) through it.
EncoderFactory = Callable[..., Encoder]
Phase = Callable[[str], None]


def default_encoder_factory(settings: EncoderSettings, phase: Phase | None = None) -> Encoder:
    """The Token Prepending encoder; its import and model load both count as loading."""
    try:
        from tpsearch.engine.token_prepending import TPEncoder
    except ImportError as error:
        raise ModelLoadError(f"the embedding engine cannot be imported: {error}") from None
    encoder: Encoder = TPEncoder(settings, phase=phase)
    return encoder


def takes_phase(factory: EncoderFactory) -> bool:
    try:
        return "phase" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def find_index_dir(start: Path) -> Path | None:
    """The nearest `.tpsearch/` folder in `start` or a parent (the way git finds `.git`)."""
    for folder in (start, *start.parents):
        if (folder / INDEX_DIR_NAME).is_dir():
            return folder / INDEX_DIR_NAME
    return None


class Collection:
    """An open collection. Use as a context manager, or call `close()`."""

    def __init__(self, folder: Path, store: Store) -> None:
        self.folder = folder
        self.root = folder.parent  # file paths are stored relative to this
        self.store = store
        self.vectors = VectorCache(folder, store)
        self._encoder: tuple[tuple[EncoderFactory, str], Encoder] | None = None
        # How long `index` waits for another process's SQLite write lock before it gives up.
        self.busy_wait_seconds = 60.0

    # --- finding and opening -----------------------------------------------------------------

    @classmethod
    def open(cls, folder: Path, write: bool = False) -> Collection:
        folder = Path(os.path.abspath(folder))
        database = folder / DB_NAME
        if not write:
            if not database.is_file():
                raise CollectionError(
                    f"no collection in {folder}: run `tpsearch index PATH` there to create one"
                )
            return cls(folder, Store.open(database))
        folder.mkdir(parents=True, exist_ok=True)
        if not Store.needs_setup(database):
            return cls(folder, Store.open(database, write=True))
        with WriterLock(folder):  # creating or upgrading the database is writing
            return cls(folder, Store.open(database, write=True))

    @classmethod
    def locate(cls, cwd: Path, explicit: Path | None = None, create: bool = False) -> Collection:
        """`explicit` if given, else the nearest `.tpsearch/` above `cwd`, else (create) a new
        `cwd/.tpsearch/`."""
        if explicit is not None:
            return cls.open(explicit if explicit.is_absolute() else cwd / explicit, write=create)
        found = find_index_dir(cwd)
        if found is not None:
            return cls.open(found, write=create)
        if create:
            return cls.open(cwd / INDEX_DIR_NAME, write=True)
        raise CollectionError(
            f"no collection: no {INDEX_DIR_NAME}/ folder in {cwd} or any folder above it. Run "
            "`tpsearch index PATH` to create one, or pass --index DIR (or set TPSEARCH_INDEX)"
        )

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the three jobs ----------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[Path | str] | None = None,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        max_file_bytes: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        encoder_factory: EncoderFactory | None = None,
        reembed: bool = False,
        progress: Progress | None = None,
        batch_size: int = 32,
        forget: Sequence[Path | str] = (),
        on_busy: Callable[[str], None] | None = None,
    ) -> IndexSummary:
        """Bring the collection up to date with `paths` (default: the paths indexed before).

        Scans, chunks and commits every changed file (so lexical search works whatever
        happens next), then embeds pending chunks, then brings the vector index up to date.
        Raises `ModelLoadError` after committing the scan if the model cannot load.
        `forget` names remembered files or folders to stop indexing: their files are removed
        (a remembered folder that is missing keeps its files until then).
        While another process writes, raises `WriterBusy`; or, with `on_busy`, tells it who
        writes (once) and waits for its turn.
        """
        from tpsearch.collection.indexing import ScanOverrides, run_index

        scan = ScanOverrides(include, exclude, max_file_bytes)
        return run_index(
            self,
            [Path(p) for p in paths] if paths else None,
            scan=scan,
            overrides=dict(overrides or {}),
            encoder_factory=encoder_factory or default_encoder_factory,
            reembed=reembed,
            progress=progress,
            batch_size=batch_size,
            forget=[Path(p) for p in forget],
            on_busy=on_busy,
        )

    def query(
        self,
        text: str,
        *,
        k: int = 10,
        mode: str = "hybrid",
        path: str | None = None,
        min_score: float | None = None,
        files: bool = False,
        overrides: Mapping[str, Any] | None = None,
        encoder_factory: EncoderFactory | None = None,
        corrected: bool = True,
        context: int | None = None,
    ) -> QueryResult:
        """The best chunks (or files) for `text`; see `search.run_query`. `corrected=False`
        scores in the raw vector space (for comparisons; see `analysis.space`). With `context`,
        each snippet is the chunk's best line and `context` lines either side (as grep -C)."""
        from tpsearch.collection.search import run_query

        return run_query(
            self,
            text,
            k=k,
            mode=mode,
            path=path,
            min_score=min_score,
            files=files,
            overrides=dict(overrides or {}),
            encoder_factory=encoder_factory or default_encoder_factory,
            corrected=corrected,
            context=context,
        )

    def similar(
        self, *, chunk_id: int | None = None, path: str | None = None, k: int = 10
    ) -> QueryResult:
        """The passages nearest a stored passage or file (no model: its stored vectors)."""
        from tpsearch.collection.reading import run_similar

        return run_similar(self, chunk_id=chunk_id, path=path, k=k)

    def read(
        self, path: str, start_line: int | None = None, end_line: int | None = None
    ) -> IndexedText:
        """The text of an indexed file (or lines of it); any path leaving the root is refused."""
        from tpsearch.collection.reading import read_indexed

        return read_indexed(self, path, start_line, end_line)

    def dedupe(
        self,
        level: Level = "file",
        settings: DedupeSettings | None = None,
        corrected: bool = True,
    ) -> DedupeReport:
        """Groups of duplicate files or passages, from what is stored (no model, no file read);
        semantic similarity in the centred space unless `corrected=False`."""
        from tpsearch.analysis import DedupeSettings
        from tpsearch.collection.analyses import dedupe

        return dedupe(self.store, level, settings or DedupeSettings(), corrected)

    def cluster(
        self,
        level: Level = "file",
        settings: ClusterSettings | None = None,
        with_map: bool = False,
        corrected: bool = True,
    ) -> ClusterOutcome:
        """Topics of the stored embeddings (centred unless `corrected=False`), labelled with
        keywords; a 2-D map if asked."""
        from tpsearch.analysis import ClusterSettings
        from tpsearch.collection.analyses import cluster

        return cluster(self.store, level, settings or ClusterSettings(), with_map, corrected)

    def status(self, check: bool = False) -> CollectionStatus:
        """What the collection holds; `check` also verifies every invariant (reads it all).
        Raises DamagedDatabase when the SQLite file is damaged, with what SQLite found."""
        from tpsearch.collection.status import read_status

        return read_status(self, check)

    # --- settings ----------------------------------------------------------------------------

    def stored_settings(self) -> EncoderSettings | None:
        data = self.store.get_meta("encoder_settings")
        return from_stored(data) if data else None

    def wanted_settings(self, overrides: Mapping[str, Any], reembed: bool) -> EncoderSettings:
        """Stored settings with `overrides` applied, refusing a change that would mix vectors."""
        stored = self.stored_settings()
        wanted = (stored or EncoderSettings()).with_overrides(**overrides)
        if stored is not None and not reembed and self.store.counts()["embedded"]:
            changes = changed_fields(stored, wanted)
            if changes:
                raise CollectionError(
                    "this collection's vectors were made with other settings ("
                    + "; ".join(changes)
                    + "): run `tpsearch index --reembed` with these settings to re-embed every "
                    "chunk, or leave the flags out to keep the current ones"
                )
        return wanted

    def encoder(
        self,
        settings: EncoderSettings,
        factory: EncoderFactory,
        phase: Phase | None = None,
        matching: str | None = None,
    ) -> Encoder:
        """The encoder for `settings`, loaded once per collection object; `phase` hears of
        slow steps of loading when the factory takes it.

        With `matching` (the stored vectors' fingerprint), an encoder kept from earlier (here,
        or by a factory that shares its encoders and can `forget` them) that no longer makes
        those vectors is loaded again: a local model's weights changed on disk and the
        collection was re-embedded with them while this process kept the old ones.
        """
        key = (factory, fingerprint_of(settings.to_dict()))
        kept = self._encoder[1] if self._encoder is not None and self._encoder[0] == key else None
        if kept is None or (matching is not None and not gives_vectors(kept, matching)):
            kept = self._load(settings, factory, phase, matching)
            self._encoder = (key, kept)
        return kept

    def _load(
        self,
        settings: EncoderSettings,
        factory: EncoderFactory,
        phase: Phase | None,
        matching: str | None,
    ) -> Encoder:
        def load() -> Encoder:
            return factory(settings, phase=phase) if takes_phase(factory) else factory(settings)

        loaded = load()
        forget = getattr(factory, "forget", None)
        if matching is not None and not gives_vectors(loaded, matching) and forget is not None:
            forget()  # a shared encoder loaded before the weights changed: read them again
            loaded = load()
        return loaded

    # --- vectors -----------------------------------------------------------------------------

    @property
    def policy(self) -> VectorPolicy:
        """When the vector index goes approximate, and how good it must be."""
        return self.vectors.policy

    @policy.setter
    def policy(self, policy: VectorPolicy) -> None:
        self.vectors.policy = policy

    def vectors_epoch(self) -> int:
        """Bumped by --reembed, so that each generation of vectors has its own FAISS file."""
        return self.vectors.epoch()

    def vectors_path(self, epoch: int | None = None) -> Path:
        return self.vectors.path(epoch)

    # --- checks ------------------------------------------------------------------------------

    def check(self) -> Check:
        """Every invariant of the database; reads everything (see `status.check_collection`)."""
        from tpsearch.collection.status import check_collection

        return check_collection(self)

    def problems(self) -> list[str]:
        """Broken invariants found by `check`; empty when consistent."""
        return self.check().problems
