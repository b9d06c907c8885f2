"""The annotation store: one SQLite database (WAL) that loses nothing (docs/ANNOTATION.md).

What it holds, per clip: the clip (media paths, size, frame count), its subjects, per-frame masks
(COCO RLE), faces, timeline actions, review status per aspect, and who changed what when. Tables:

    store_info  key/value: schema version
    clips       one row per clip: version, media, size, meta, errors, deleted, created/updated by/at
    subjects    clip, subject id, order, name, kind, references, confidence
    actions     clip, subject, order, start_s, end_s, caption
    masks       clip, subject, frame, RLE (height, width, counts), area
    faces       clip, subject, order, frame, box, score, optional RLE
    reviews     clip, aspect (masks | timeline), status, reason, annotator, time
    revisions   clip, version, operation, annotator, time, what changed (words), the whole
                document at that version (zlib-compressed JSON): the audit history

Rules:

- **Optimistic versioning.** Every save names the version it was based on (`expected_version`;
  0 for a new clip). If the clip has moved on since, nothing is written and `ConflictError` says
  who changed what in the version now stored and what the caller changed, and carries both
  documents. Overwriting the other change takes a second, explicit save based on the new version.
- **Atomic saves.** A save is one transaction (`BEGIN IMMEDIATE` ... `COMMIT`): the clip row, its
  child rows and the revision. A process killed in the middle leaves the previous version.
- **History.** Every saved version is kept; `revert` makes a new version equal to an old one (a
  revert is itself in the history, so it can be reverted). Deleting a clip is a version too.
- **Locked database.** When another writer holds the database longer than `timeout` seconds the
  save raises `StoreLockedError`, and the change is written to a pending file beside the database
  (`<db>.pending/`); `retry_pending()` applies those later, with the same conflict check.
- Bad input raises `AnnotationError` naming the clip, subject and frame.

The SQL is portable (standard types, `?` parameters, no upserts, no SQLite-only clauses); what is
SQLite-specific (connect, pragmas, `BEGIN IMMEDIATE`, telling a lock from other errors) sits in
`_SQLiteDialect`, so a server database needs another dialect, not another store.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from model.timeline import Action, Subject, Timeline

from . import rle as R
from .document import (
    REVIEW_ASPECTS,
    REVIEW_STATUSES,
    AnnotationError,
    ClipAnnotation,
    Face,
    Review,
    StoreError,
    describe_changes,
)

SCHEMA_VERSION = 1
log = logging.getLogger("reactid.annotate.store")


class ConflictError(StoreError):
    """A save based on a version that is no longer the stored one. Nothing was written.

    `.theirs` is the stored document (the newer version), `.mine` the document the caller tried
    to save (None where it could not be rebuilt), `.base` the version the caller started from (None
    if it is unknown); `.their_changes` / `.my_changes` describe both edits relative to `.base`."""

    def __init__(self, clip_id: str, expected_version: int, theirs: ClipAnnotation | None, mine: ClipAnnotation | None,
                 base: ClipAnnotation | None, their_changes: list[str], my_changes: list[str]):
        self.clip_id = clip_id
        self.expected_version = expected_version
        self.current_version = theirs.version if theirs else 0
        self.theirs, self.mine, self.base = theirs, mine, base
        self.their_changes, self.my_changes = their_changes, my_changes
        if theirs is None:
            msg = f"clip {clip_id!r}: not saved: your change was based on version {expected_version}, but the clip is not in the store"
        elif expected_version == 0:
            msg = (f"clip {clip_id!r}: not saved: the clip already exists (version {theirs.version}, saved by {theirs.updated_by!r} at "
                   f"{theirs.updated_at}); nothing was overwritten.")
        else:
            msg = (f"clip {clip_id!r}: not saved: {theirs.updated_by!r} saved version {theirs.version} at {theirs.updated_at}, after the "
                   f"version {expected_version} your change was based on; nothing was overwritten.")
        if theirs is not None:
            msg += f"\n  version {theirs.version} (stored, by {theirs.updated_by}): " + ("; ".join(their_changes) or "no visible change")
            msg += "\n  your version (not saved): " + ("; ".join(my_changes) if mine is not None else "could not be rebuilt")
            msg += (f"\nReload version {theirs.version} and apply your change again, or save with expected_version={theirs.version} "
                    f"to replace theirs on purpose.")
        super().__init__(msg)


class StoreLockedError(StoreError):
    """The database stayed locked by another writer. Nothing in the database changed; the change
    is kept in `.pending_file` (when it could be written) for `retry_pending()`."""

    def __init__(self, message: str, clip_id: str | None = None, pending_file: Path | None = None):
        self.clip_id = clip_id
        self.pending_file = pending_file
        super().__init__(message)


@dataclass
class Revision:
    clip_id: str
    version: int
    operation: str
    annotator: str
    at: str
    changes: list[str]


@dataclass
class ClipSummary:
    """One row of the review queue."""

    clip_id: str
    version: int
    num_subjects: int
    kinds: list[str]
    min_confidence: float | None
    review: dict[str, str]
    updated_at: str
    updated_by: str
    deleted: bool


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _pack(doc: dict) -> str:
    return "z1:" + base64.b64encode(zlib.compress(json.dumps(doc, separators=(",", ":")).encode("utf-8"), 6)).decode("ascii")


def _unpack(text: str) -> dict:
    if text.startswith("z1:"):
        return json.loads(zlib.decompress(base64.b64decode(text[3:])).decode("utf-8"))
    return json.loads(text)


# --------------------------------------------------------------------------------------------
# Portable schema
# --------------------------------------------------------------------------------------------
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS store_info (
        info_key VARCHAR(64) NOT NULL PRIMARY KEY,
        info_value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS clips (
        clip_id VARCHAR(128) NOT NULL PRIMARY KEY,
        version INTEGER NOT NULL,
        frames_path TEXT,
        video_path TEXT,
        num_frames INTEGER NOT NULL,
        height INTEGER NOT NULL,
        width INTEGER NOT NULL,
        duration DOUBLE PRECISION NOT NULL,
        fps INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        sources TEXT NOT NULL,
        meta TEXT NOT NULL,
        errors TEXT NOT NULL,
        deleted INTEGER NOT NULL,
        created_at VARCHAR(40) NOT NULL,
        created_by VARCHAR(128) NOT NULL,
        updated_at VARCHAR(40) NOT NULL,
        updated_by VARCHAR(128) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS subjects (
        clip_id VARCHAR(128) NOT NULL REFERENCES clips (clip_id),
        subject_id VARCHAR(32) NOT NULL,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        kind VARCHAR(16) NOT NULL,
        refs_intra TEXT NOT NULL,
        refs_inter TEXT NOT NULL,
        confidence DOUBLE PRECISION,
        PRIMARY KEY (clip_id, subject_id))""",
    """CREATE TABLE IF NOT EXISTS actions (
        clip_id VARCHAR(128) NOT NULL REFERENCES clips (clip_id),
        subject_id VARCHAR(32) NOT NULL,
        position INTEGER NOT NULL,
        start_s DOUBLE PRECISION NOT NULL,
        end_s DOUBLE PRECISION NOT NULL,
        caption TEXT NOT NULL,
        PRIMARY KEY (clip_id, subject_id, position))""",
    """CREATE TABLE IF NOT EXISTS masks (
        clip_id VARCHAR(128) NOT NULL REFERENCES clips (clip_id),
        subject_id VARCHAR(32) NOT NULL,
        frame INTEGER NOT NULL,
        height INTEGER NOT NULL,
        width INTEGER NOT NULL,
        counts TEXT NOT NULL,
        area INTEGER NOT NULL,
        PRIMARY KEY (clip_id, subject_id, frame))""",
    """CREATE TABLE IF NOT EXISTS faces (
        clip_id VARCHAR(128) NOT NULL REFERENCES clips (clip_id),
        position INTEGER NOT NULL,
        subject_id VARCHAR(32) NOT NULL,
        frame INTEGER NOT NULL,
        box_x DOUBLE PRECISION NOT NULL,
        box_y DOUBLE PRECISION NOT NULL,
        box_w DOUBLE PRECISION NOT NULL,
        box_h DOUBLE PRECISION NOT NULL,
        score DOUBLE PRECISION,
        mask_counts TEXT,
        PRIMARY KEY (clip_id, position))""",
    """CREATE TABLE IF NOT EXISTS reviews (
        clip_id VARCHAR(128) NOT NULL REFERENCES clips (clip_id),
        aspect VARCHAR(16) NOT NULL,
        status VARCHAR(16) NOT NULL,
        reason TEXT NOT NULL,
        annotator VARCHAR(128) NOT NULL,
        reviewed_at VARCHAR(40) NOT NULL,
        PRIMARY KEY (clip_id, aspect))""",
    """CREATE TABLE IF NOT EXISTS revisions (
        clip_id VARCHAR(128) NOT NULL,
        version INTEGER NOT NULL,
        operation VARCHAR(32) NOT NULL,
        annotator VARCHAR(128) NOT NULL,
        created_at VARCHAR(40) NOT NULL,
        changes TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        PRIMARY KEY (clip_id, version))""",
    "CREATE INDEX IF NOT EXISTS reviews_by_status ON reviews (aspect, status)",
]
_CHILD_TABLES = ("masks", "faces", "actions", "reviews", "subjects")


class _SQLiteDialect:
    """Everything SQLite-specific."""

    name = "sqlite"

    @staticmethod
    def connect(path: Path, timeout: float) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; the store issues BEGIN/COMMIT itself.
        conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("annotation store %s: journal mode is %s, not WAL (a network file system?)", path, mode)
        conn.execute("PRAGMA synchronous=FULL")  # a committed save survives a power cut, not only a crash
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    begin_write = "BEGIN IMMEDIATE"  # take the write lock first, so the version check and the write are one step
    begin_read = "BEGIN"

    @staticmethod
    def is_locked(exc: BaseException) -> bool:
        msg = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------
class AnnotationStore:
    """`AnnotationStore(path)` opens (or creates) the database file. Thread-safe; open one per
    process. Paths inside documents (frames, video, references) that are relative are relative to
    `media_root` (default: the database's folder)."""

    def __init__(self, path: str | os.PathLike, *, timeout: float = 5.0, media_root: str | os.PathLike | None = None,
                 fault_hook: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.timeout = float(timeout)
        self.media_root = Path(media_root) if media_root is not None else self.path.resolve().parent
        self.pending_dir = self.path.with_name(self.path.name + ".pending")
        self.fault_hook = fault_hook  # tests: called at named points inside a save ("masks-half-written", ...)
        self.dialect = _SQLiteDialect
        self._lock = threading.RLock()
        if not self.path.parent.is_dir():
            raise StoreError(f"cannot open annotation database {self.path}: folder {self.path.parent} does not exist")
        try:
            self._conn = self.dialect.connect(self.path, self.timeout)
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            if self.dialect.is_locked(exc):
                raise StoreLockedError(f"annotation database {self.path} is locked by another process (waited {self.timeout:g} s); "
                                       f"it was not changed: try again") from None
            raise StoreError(f"cannot open annotation database {self.path}: {exc}") from None

    # ---- plumbing -------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "AnnotationStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fault(self, point: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(point)

    def _init_schema(self) -> None:
        try:  # an existing store opens without the write lock (another writer may hold it)
            row = self._conn.execute("SELECT info_value FROM store_info WHERE info_key = ?", ("schema_version",)).fetchone()
        except sqlite3.OperationalError as exc:
            if self.dialect.is_locked(exc):
                raise
            row = None  # no tables yet
        if row is not None and int(row[0]) == SCHEMA_VERSION:
            return
        with self._write(None, "create the schema") as c:
            for stmt in SCHEMA:
                c.execute(stmt)
            row = c.execute("SELECT info_value FROM store_info WHERE info_key = ?", ("schema_version",)).fetchone()
            if row is None:
                c.execute("INSERT INTO store_info (info_key, info_value) VALUES (?, ?)", ("schema_version", str(SCHEMA_VERSION)))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(f"annotation database {self.path} has schema version {row[0]}; this build reads up to {SCHEMA_VERSION}")

    def _locked_message(self, clip_id: str | None, what: str) -> str:
        where = f"clip {clip_id!r}: " if clip_id else ""
        return (f"{where}could not {what}: the annotation database {self.path} is locked by another writer "
                f"(waited {self.timeout:g} s); the database was not changed")

    @contextmanager
    def _write(self, clip_id: str | None, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            c = self._conn
            try:
                c.execute(self.dialect.begin_write)
            except sqlite3.OperationalError as exc:
                if self.dialect.is_locked(exc):
                    raise StoreLockedError(self._locked_message(clip_id, what), clip_id) from None
                raise StoreError(f"{'clip %r: ' % clip_id if clip_id else ''}could not {what}: {exc}") from None
            try:
                yield c
                self._fault("before-commit")
                c.execute("COMMIT")
            except BaseException as exc:
                try:
                    c.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.OperationalError) and self.dialect.is_locked(exc):
                    raise StoreLockedError(self._locked_message(clip_id, what), clip_id) from None
                if isinstance(exc, sqlite3.DatabaseError):
                    raise StoreError(f"{'clip %r: ' % clip_id if clip_id else ''}could not {what}: {exc}; nothing was changed") from None
                raise

    @contextmanager
    def _read(self, clip_id: str | None = None) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for a multi-statement read (WAL: readers never wait for writers)."""
        with self._lock:
            c = self._conn
            try:
                c.execute(self.dialect.begin_read)
                try:
                    yield c
                finally:
                    c.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self.dialect.is_locked(exc):
                    raise StoreLockedError(self._locked_message(clip_id, "read"), clip_id) from None
                raise

    # ---- reading --------------------------------------------------------------------------
    def _load(self, c: sqlite3.Connection, clip_id: str) -> ClipAnnotation | None:
        row = c.execute(
            "SELECT version, frames_path, video_path, num_frames, height, width, duration, fps, prompt, sources, meta, errors, deleted, "
            "created_at, created_by, updated_at, updated_by FROM clips WHERE clip_id = ?", (clip_id,)).fetchone()
        if row is None:
            return None
        (version, frames, video, F, H, W, duration, fps, prompt, sources, meta, errors, deleted, cat, cby, uat, uby) = row
        subjects, inter, conf = [], {}, {}
        for sid, name, kind, ri, ro, cf in c.execute(
                "SELECT subject_id, name, kind, refs_intra, refs_inter, confidence FROM subjects WHERE clip_id = ? ORDER BY position", (clip_id,)):
            subjects.append(Subject(sid, name, kind, json.loads(ri), []))
            if json.loads(ro):
                inter[sid] = json.loads(ro)
            if cf is not None:
                conf[sid] = cf
        by_id = {s.id: s for s in subjects}
        for sid, start, end, caption in c.execute(
                "SELECT subject_id, start_s, end_s, caption FROM actions WHERE clip_id = ? ORDER BY subject_id, position", (clip_id,)):
            by_id[sid].actions.append(Action(start, end, caption))
        masks: dict[str, list] = {s.id: [None] * F for s in subjects}
        for sid, f, h, w, counts in c.execute("SELECT subject_id, frame, height, width, counts FROM masks WHERE clip_id = ?", (clip_id,)):
            masks[sid][f] = {"size": [h, w], "counts": counts}
        faces = []
        for sid, f, x, y, w, h, score, mc in c.execute(
                "SELECT subject_id, frame, box_x, box_y, box_w, box_h, score, mask_counts FROM faces WHERE clip_id = ? ORDER BY position", (clip_id,)):
            faces.append(Face(sid, f, (x, y, w, h), score, None if mc is None else {"size": [H, W], "counts": mc}))
        review = {a: Review() for a in REVIEW_ASPECTS}
        for aspect, status, reason, who, at in c.execute(
                "SELECT aspect, status, reason, annotator, reviewed_at FROM reviews WHERE clip_id = ?", (clip_id,)):
            review[aspect] = Review(status, reason, who, at)
        tl = Timeline(duration=duration, subjects=subjects, prompt=prompt, fps=fps)
        return ClipAnnotation(clip_id, tl, F, H, W, frames, video, masks, faces, inter, conf, json.loads(sources), review,
                              json.loads(meta), json.loads(errors), bool(deleted), version, cat, cby, uat, uby)

    def get(self, clip_id: str, version: int | None = None, *, include_deleted: bool = False) -> ClipAnnotation:
        """The clip as stored now, or as it was at `version` (from the history)."""
        if version is not None:
            return self.get_version(clip_id, version)
        with self._read(clip_id) as c:
            doc = self._load(c, clip_id)
        if doc is None:
            raise AnnotationError(f"clip {clip_id!r} is not in the annotation store {self.path}", clip_id)
        if doc.deleted and not include_deleted:
            raise AnnotationError(f"clip {clip_id!r} was deleted (version {doc.version}, by {doc.updated_by!r}); revert to an earlier "
                                  f"version to restore it", clip_id)
        return doc

    def get_version(self, clip_id: str, version: int) -> ClipAnnotation:
        with self._read(clip_id) as c:
            doc = self._snapshot(c, clip_id, version)
        if doc is None:
            raise AnnotationError(f"clip {clip_id!r} has no version {version}", clip_id)
        return doc

    def _snapshot(self, c: sqlite3.Connection, clip_id: str, version: int) -> ClipAnnotation | None:
        row = c.execute("SELECT snapshot, annotator, created_at FROM revisions WHERE clip_id = ? AND version = ?", (clip_id, version)).fetchone()
        if row is None:
            return None
        doc = ClipAnnotation.from_dict(_unpack(row[0]))
        doc.version, doc.updated_by, doc.updated_at = version, row[1], row[2]
        first = c.execute("SELECT annotator, created_at FROM revisions WHERE clip_id = ? AND version = 1", (clip_id,)).fetchone()
        if first:
            doc.created_by, doc.created_at = first
        return doc

    def exists(self, clip_id: str, *, include_deleted: bool = False) -> bool:
        with self._read(clip_id) as c:
            row = c.execute("SELECT deleted FROM clips WHERE clip_id = ?", (clip_id,)).fetchone()
        return row is not None and (include_deleted or not row[0])

    def clip_ids(self, *, include_deleted: bool = False) -> list[str]:
        with self._read() as c:
            q = "SELECT clip_id FROM clips" + ("" if include_deleted else " WHERE deleted = 0") + " ORDER BY clip_id"
            return [r[0] for r in c.execute(q)]

    def history(self, clip_id: str) -> list[Revision]:
        """Every version of the clip, oldest first, with what changed in words."""
        with self._read(clip_id) as c:
            rows = c.execute("SELECT version, operation, annotator, created_at, changes FROM revisions WHERE clip_id = ? ORDER BY version",
                             (clip_id,)).fetchall()
        if not rows:
            raise AnnotationError(f"clip {clip_id!r} is not in the annotation store {self.path}", clip_id)
        return [Revision(clip_id, v, op, who, at, json.loads(ch)) for v, op, who, at, ch in rows]

    def list_clips(self, *, aspect: str | None = None, status: str | None = None, kind: str | None = None,
                   max_confidence: float | None = None, include_deleted: bool = False) -> list[ClipSummary]:
        """The review queue: clips whose `aspect` review has `status`, that have a subject of
        `kind`, or a subject whose confidence is at most `max_confidence`; ordered by clip id."""
        if status is not None and status not in REVIEW_STATUSES:
            raise AnnotationError(f"unknown review status {status!r} (one of {', '.join(REVIEW_STATUSES)})")
        if aspect is not None and aspect not in REVIEW_ASPECTS:
            raise AnnotationError(f"unknown review aspect {aspect!r} (one of {', '.join(REVIEW_ASPECTS)})")
        where, args = [], []
        if not include_deleted:
            where.append("c.deleted = 0")
        if status is not None:
            aspects = [aspect] if aspect else list(REVIEW_ASPECTS)
            marks = ", ".join("?" for _ in aspects)
            where.append(f"EXISTS (SELECT 1 FROM reviews r WHERE r.clip_id = c.clip_id AND r.aspect IN ({marks}) AND r.status = ?)")
            args += [*aspects, status]
        if kind is not None:
            where.append("EXISTS (SELECT 1 FROM subjects s WHERE s.clip_id = c.clip_id AND s.kind = ?)")
            args.append(kind)
        if max_confidence is not None:
            where.append("EXISTS (SELECT 1 FROM subjects s WHERE s.clip_id = c.clip_id AND s.confidence <= ?)")
            args.append(float(max_confidence))
        q = "SELECT c.clip_id, c.version, c.updated_at, c.updated_by, c.deleted FROM clips c"
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY c.clip_id"
        out = []
        with self._read() as c:
            for cid, version, uat, uby, deleted in c.execute(q, args).fetchall():
                subs = c.execute("SELECT kind, confidence FROM subjects WHERE clip_id = ? ORDER BY position", (cid,)).fetchall()
                rev = {a: "pending" for a in REVIEW_ASPECTS}
                rev.update({a: s for a, s in c.execute("SELECT aspect, status FROM reviews WHERE clip_id = ?", (cid,))})
                confs = [cf for _, cf in subs if cf is not None]
                out.append(ClipSummary(cid, version, len(subs), [k for k, _ in subs], min(confs) if confs else None, rev, uat, uby, bool(deleted)))
        return out

    def next_clip(self, aspect: str, *, status: str = "pending", after: str | None = None, **filters) -> str | None:
        """The next clip (by id, after `after`) whose `aspect` review has `status`, or None."""
        for s in self.list_clips(aspect=aspect, status=status, **filters):
            if after is None or s.clip_id > after:
                return s.clip_id
        return None

    def counts(self, aspect: str) -> dict[str, int]:
        """How many live clips have each review status for `aspect` (done / left counters)."""
        if aspect not in REVIEW_ASPECTS:
            raise AnnotationError(f"unknown review aspect {aspect!r} (one of {', '.join(REVIEW_ASPECTS)})")
        out = {s: 0 for s in REVIEW_STATUSES}
        with self._read() as c:
            for status, n in c.execute("SELECT r.status, COUNT(*) FROM reviews r JOIN clips c ON c.clip_id = r.clip_id "
                                       "WHERE r.aspect = ? AND c.deleted = 0 GROUP BY r.status", (aspect,)):
                out[status] = n
        return out

    def mask_array(self, clip_id: str, subject_id: str, missing: str = "empty") -> np.ndarray:
        return self.get(clip_id).mask_array(subject_id, missing)

    def resolve(self, path: str | None) -> Path | None:
        """A media path of a document as a file path (relative ones are under media_root)."""
        if path is None:
            return None
        p = Path(path)
        return p if p.is_absolute() else self.media_root / p

    # ---- writing --------------------------------------------------------------------------
    def _write_doc(self, c: sqlite3.Connection, doc: ClipAnnotation, existed: bool, operation: str, changes: list[str]) -> None:
        cid = doc.clip_id
        tl = doc.timeline
        common = (doc.version, doc.frames, doc.video, doc.num_frames, doc.height, doc.width, float(tl.duration), int(tl.fps), tl.prompt,
                  json.dumps(doc.sources), json.dumps(doc.meta), json.dumps(doc.errors), int(doc.deleted), doc.updated_at, doc.updated_by)
        if existed:
            c.execute("UPDATE clips SET version = ?, frames_path = ?, video_path = ?, num_frames = ?, height = ?, width = ?, duration = ?, "
                      "fps = ?, prompt = ?, sources = ?, meta = ?, errors = ?, deleted = ?, updated_at = ?, updated_by = ? "
                      "WHERE clip_id = ? AND version = ?", (*common, cid, doc.version - 1))
        else:
            c.execute("INSERT INTO clips (version, frames_path, video_path, num_frames, height, width, duration, fps, prompt, sources, meta, "
                      "errors, deleted, updated_at, updated_by, created_at, created_by, clip_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (*common, doc.created_at, doc.created_by, cid))
        self._fault("clip-written")
        for table in _CHILD_TABLES:
            c.execute(f"DELETE FROM {table} WHERE clip_id = ?", (cid,))
        self._fault("children-deleted")
        for pos, s in enumerate(tl.subjects):
            c.execute("INSERT INTO subjects (clip_id, subject_id, position, name, kind, refs_intra, refs_inter, confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (cid, s.id, pos, s.name, s.kind, json.dumps(s.references), json.dumps(doc.inter_references.get(s.id, [])),
                       doc.confidence.get(s.id)))
            c.executemany("INSERT INTO actions (clip_id, subject_id, position, start_s, end_s, caption) VALUES (?, ?, ?, ?, ?, ?)",
                          [(cid, s.id, k, float(a.start), float(a.end), a.text) for k, a in enumerate(s.actions)])
        rows = [(cid, sid, f, r["size"][0], r["size"][1], r["counts"], R.area(r))
                for sid, rles in doc.masks.items() for f, r in enumerate(rles) if r is not None]
        half = len(rows) // 2
        ins = "INSERT INTO masks (clip_id, subject_id, frame, height, width, counts, area) VALUES (?, ?, ?, ?, ?, ?, ?)"
        c.executemany(ins, rows[:half])
        self._fault("masks-half-written")
        c.executemany(ins, rows[half:])
        c.executemany("INSERT INTO faces (clip_id, position, subject_id, frame, box_x, box_y, box_w, box_h, score, mask_counts) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      [(cid, k, f.subject_id, int(f.frame), *[float(v) for v in f.box], f.score, None if f.mask is None else f.mask["counts"])
                       for k, f in enumerate(doc.faces)])
        c.executemany("INSERT INTO reviews (clip_id, aspect, status, reason, annotator, reviewed_at) VALUES (?, ?, ?, ?, ?, ?)",
                      [(cid, a, r.status, r.reason, r.annotator, r.at) for a, r in doc.review.items()])
        c.execute("INSERT INTO revisions (clip_id, version, operation, annotator, created_at, changes, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (cid, doc.version, operation, doc.updated_by, doc.updated_at, json.dumps(changes), _pack(doc.content_dict())))
        self._fault("revision-written")

    def commit(self, clip_id: str, build: Callable[[ClipAnnotation | None], ClipAnnotation], expected_version: int, annotator: str,
               operation: str) -> ClipAnnotation:
        """The one write path (every public change goes through it): in one transaction, check that
        the clip is at `expected_version` (0: not stored yet), call `build(stored copy or None)` for
        the new document, validate it, write it and its revision. Returns the stored document; a
        build that changes nothing returns the current version without writing."""
        if not isinstance(annotator, str) or not annotator.strip():
            raise AnnotationError(f"clip {clip_id!r}: every change needs the annotator's name", clip_id)
        if isinstance(expected_version, bool) or not isinstance(expected_version, (int, np.integer)) or expected_version < 0:
            raise AnnotationError(f"clip {clip_id!r}: expected_version must be the version the change is based on (0 for a new clip), "
                                  f"got {expected_version!r}", clip_id)
        expected_version = int(expected_version)
        try:
            with self._write(clip_id, f"save ({operation})") as c:
                cur = self._load(c, clip_id)
                if cur is None and expected_version != 0:
                    raise AnnotationError(f"clip {clip_id!r} is not in the annotation store {self.path} (the change was based on version "
                                          f"{expected_version})", clip_id)
                if cur is not None and cur.version != expected_version:
                    raise self._conflict(c, clip_id, cur, build, expected_version)
                new = build(None if cur is None else cur.copy())
                if not isinstance(new, ClipAnnotation):
                    raise TypeError(f"clip {clip_id!r}: a change must produce a ClipAnnotation, got {type(new).__name__}")
                new = new.copy()
                if new.clip_id != clip_id:
                    raise AnnotationError(f"clip {clip_id!r}: the document is for clip {new.clip_id!r}", clip_id)
                new.validate()
                if cur is not None and new.content_dict() == cur.content_dict():
                    return cur  # nothing changed: no new version
                now = _now()
                changes = describe_changes(None if cur is None else cur.content_dict(), new.content_dict())
                new.version = expected_version + 1
                new.updated_at, new.updated_by = now, annotator
                new.created_at, new.created_by = (cur.created_at, cur.created_by) if cur is not None else (now, annotator)
                self._write_doc(c, new, cur is not None, operation, changes)
                return new
        except StoreLockedError as exc:
            pending = self._spool(clip_id, build, expected_version, annotator, operation)
            if pending is not None:
                raise StoreLockedError(f"{exc}; your change is kept in {pending} (AnnotationStore.retry_pending() saves it, "
                                       f"with the usual conflict check)", clip_id, pending) from None
            raise StoreLockedError(f"{exc}; the change could not be kept in a pending file either: keep it and save it again",
                                   clip_id) from None

    def _conflict(self, c, clip_id, cur, build, expected_version) -> ConflictError:
        base = self._snapshot(c, clip_id, expected_version) if expected_version > 0 else None
        mine = None
        try:
            mine = build(None if base is None else base.copy())
        except Exception:  # the change cannot be re-applied to its base: the message says so
            mine = None
        base_content = base.content_dict() if base is not None else None
        theirs_changes = describe_changes(base_content, cur.content_dict()) if base is not None else describe_changes(None, cur.content_dict())
        my_changes = describe_changes(base_content, mine.content_dict()) if mine is not None else []
        return ConflictError(clip_id, expected_version, cur, mine, base, theirs_changes, my_changes)

    # ---- the pending spool (locked database) ------------------------------------------------
    def _spool(self, clip_id: str, build, expected_version: int, annotator: str, operation: str) -> Path | None:
        """Keep a change that could not be saved because the database was locked. The change is
        rebuilt on the version it was based on (read without the write lock: WAL readers never
        wait) and validated first: bad input is reported as such, never kept."""
        base = None
        if expected_version > 0:
            try:
                with self._read(clip_id) as c:
                    base = self._snapshot(c, clip_id, expected_version)
            except StoreError:
                base = None
            if base is None:
                return None
        doc = build(base)  # AnnotationError (bad input) propagates
        if isinstance(doc, ClipAnnotation):
            doc = doc.copy().validate()
        try:
            record = {"clip_id": clip_id, "expected_version": expected_version, "annotator": annotator, "operation": operation,
                      "at": _now(), "document": doc.content_dict()}
            self.pending_dir.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            path = self.pending_dir / f"{clip_id}.v{expected_version}.{stamp}.{os.getpid()}.json"
            tmp = path.with_suffix(".json.tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            return path
        except Exception as exc:  # never hide the lock error behind a spool error
            log.error("clip %r: could not write the pending change: %s", clip_id, exc)
            return None

    def pending(self) -> list[Path]:
        """Changes kept while the database was locked, oldest first."""
        if not self.pending_dir.is_dir():
            return []
        return sorted(self.pending_dir.glob("*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))

    def retry_pending(self) -> list[tuple[Path, ClipAnnotation | StoreError]]:
        """Save every pending change (oldest first). A saved one is removed; one that conflicts or
        is still locked stays, and its error is returned beside it."""
        out = []
        for path in self.pending():
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
                doc = ClipAnnotation.from_dict(rec["document"])
                saved = self.commit(rec["clip_id"], lambda _cur, d=doc: d, rec["expected_version"], rec["annotator"],
                                     rec.get("operation", "save") + " (pending)")
            except StoreLockedError as exc:
                out.append((path, exc))
                # _commit spooled it again; keep only the original
                if exc.pending_file is not None and exc.pending_file != path:
                    exc.pending_file.unlink(missing_ok=True)
                continue
            except StoreError as exc:
                out.append((path, exc))
                continue
            except (OSError, ValueError, KeyError) as exc:
                out.append((path, StoreError(f"pending change {path.name} cannot be read: {exc}")))
                continue
            path.unlink(missing_ok=True)
            out.append((path, saved))
        return out

    # ---- public changes ---------------------------------------------------------------------
    def add(self, doc: ClipAnnotation, *, annotator: str) -> ClipAnnotation:
        """Store a new clip (version 1). A clip id already stored -> ConflictError."""
        return self.commit(doc.clip_id, lambda _cur: doc, 0, annotator, "create")

    def save(self, doc: ClipAnnotation, *, annotator: str, expected_version: int | None = None, operation: str = "save") -> ClipAnnotation:
        """Save a whole document. It must be based on the stored version (`doc.version`, or
        `expected_version` when given); otherwise ConflictError and nothing is written."""
        exp = doc.version if expected_version is None else expected_version
        return self.commit(doc.clip_id, lambda _cur: doc, exp, annotator, operation)

    def update(self, clip_id: str, change: Callable[[ClipAnnotation], Any], *, expected_version: int, annotator: str,
               operation: str = "edit") -> ClipAnnotation:
        """Apply `change(doc)` (which edits the document in place) to the stored clip, if it is
        still at `expected_version`."""
        def build(cur: ClipAnnotation | None) -> ClipAnnotation:
            if cur is None:
                raise AnnotationError(f"clip {clip_id!r} is not in the annotation store {self.path}", clip_id)
            if cur.deleted and operation != "revert":
                raise AnnotationError(f"clip {clip_id!r} was deleted (version {cur.version}); revert to an earlier version to restore it", clip_id)
            change(cur)
            return cur
        return self.commit(clip_id, build, expected_version, annotator, operation)

    def set_mask(self, clip_id: str, subject_id: str, frame: int, mask: Any, *, expected_version: int, annotator: str,
                 source: str | None = None) -> ClipAnnotation:
        """One frame of one subject's mask (bool [H, W], an RLE, or None)."""
        def change(d: ClipAnnotation) -> None:
            d.set_mask(subject_id, frame, mask)
            if source:
                d.sources["masks"] = source
        return self.update(clip_id, change, expected_version=expected_version, annotator=annotator, operation="mask")

    def set_masks(self, clip_id: str, subject_id: str, masks: Any, *, expected_version: int, annotator: str,
                  source: str | None = None) -> ClipAnnotation:
        """A subject's masks: bool [F, H, W] or {frame: mask} (e.g. a fix propagated to neighbouring frames)."""
        def change(d: ClipAnnotation) -> None:
            d.set_masks(subject_id, masks)
            if source:
                d.sources["masks"] = source
        return self.update(clip_id, change, expected_version=expected_version, annotator=annotator, operation="masks")

    def set_timeline(self, clip_id: str, timeline: Timeline | dict, *, expected_version: int, annotator: str) -> ClipAnnotation:
        """Replace the timeline (labels). Subjects it drops lose their masks and faces (kept in the history)."""
        tl = Timeline.from_dict(timeline, validate=False) if isinstance(timeline, dict) else timeline
        return self.update(clip_id, lambda d: d.replace_timeline(tl), expected_version=expected_version, annotator=annotator,
                           operation="timeline")

    def set_faces(self, clip_id: str, faces: list[Face | dict], *, expected_version: int, annotator: str) -> ClipAnnotation:
        fs = [f if isinstance(f, Face) else Face.from_dict(f) for f in faces]

        def change(d: ClipAnnotation) -> None:
            d.faces = list(fs)
        return self.update(clip_id, change, expected_version=expected_version, annotator=annotator, operation="faces")

    def set_review(self, clip_id: str, aspect: str, status: str, *, reason: str = "", expected_version: int,
                   annotator: str) -> ClipAnnotation:
        """Accept / fix / reject (with a reason) one aspect ("masks" or "timeline") of a clip."""
        def change(d: ClipAnnotation) -> None:
            d.set_review(aspect, status, reason, annotator, _now())
        return self.update(clip_id, change, expected_version=expected_version, annotator=annotator, operation=f"review-{aspect}")

    def delete(self, clip_id: str, *, expected_version: int, annotator: str) -> ClipAnnotation:
        """Mark the clip deleted (a new version; `revert` restores it)."""
        def change(d: ClipAnnotation) -> None:
            d.deleted = True
        return self.update(clip_id, change, expected_version=expected_version, annotator=annotator, operation="delete")

    def revert(self, clip_id: str, to_version: int, *, expected_version: int, annotator: str) -> ClipAnnotation:
        """Make a new version whose content equals version `to_version`."""
        with self._read(clip_id) as c:
            old = self._snapshot(c, clip_id, int(to_version))
        if old is None:
            raise AnnotationError(f"clip {clip_id!r} has no version {to_version} to revert to", clip_id)

        def build(cur: ClipAnnotation | None) -> ClipAnnotation:
            doc = old.copy()
            doc.version = cur.version if cur else 0
            return doc
        return self.commit(clip_id, build, expected_version, annotator, f"revert-to-{int(to_version)}")


__all__ = ["AnnotationError", "AnnotationStore", "ClipAnnotation", "ClipSummary", "ConflictError", "Face", "Revision", "SCHEMA",
           "SCHEMA_VERSION", "StoreError", "StoreLockedError"]
