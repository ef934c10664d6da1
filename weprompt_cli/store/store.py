"""`SessionStore`: every session under `<home>/sessions/<id>/`.

It finds, creates, lists, renames, forks and deletes sessions; `OpenSession`
(session.py) is one of them held by this process. A new or forked session is built in
a hidden `.tmp-*` folder and renamed into place; a deleted one is renamed to a hidden
`.trash-*` folder first; hidden entries are never sessions.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from weprompt_cli.atomic import atomic_write_json, atomic_write_text, fsync_dir
from weprompt_cli.errors import ConflictError, DiskError, InvalidFileError, NotFoundError, UsageError
from weprompt_cli.paths import Home
from weprompt_cli.store.layout import (
    LOCK,
    SESSION_JSON,
    STATES,
    link_or_copy,
    read_meta,
    reconcile,
    remove_tree,
    sort_key,
)
from weprompt_cli.store.lease import sweep_temp_records
from weprompt_cli.store.lock import FileLock
from weprompt_cli.store.model import ModelRef, ParentRef, SessionMeta, Turn, total_tokens, utc_now
from weprompt_cli.store.names import MAX_NAME_LEN, inside, new_session_id, validate_name
from weprompt_cli.store.retention import DEFAULT_BUDGET_BYTES, DEFAULT_KEEP_LATEST
from weprompt_cli.store.session import OpenSession, Retention
from weprompt_cli.store.states import state_files
from weprompt_cli.store.transcript import TRANSCRIPT, Problem, read_transcript, transcript_text

_STORE_LOCK = ".lock"
_NEW_PREFIX = ".tmp-new-"
_FORK_PREFIX = ".tmp-fork-"
_TRASH_PREFIX = ".trash-"


class SessionStore:
    """All sessions under `home.sessions`."""

    def __init__(
        self,
        home: Home,
        *,
        state_budget_bytes: int = DEFAULT_BUDGET_BYTES,
        keep_latest: int = DEFAULT_KEEP_LATEST,
    ) -> None:
        self.home = home
        self.root = home.sessions
        self.state_budget_bytes = state_budget_bytes
        self.keep_latest = keep_latest

    # -- paths and scanning -------------------------------------------------------

    def session_dir(self, session_id: str) -> Path:
        """The folder of session `session_id`, checked to stay inside the sessions folder."""
        return inside(self.root, validate_name(session_id, what="session id"))

    def _store_lock(self) -> FileLock:
        """A short store-wide lock around name checks, creation and removal."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DiskError(f"cannot create the sessions folder: {exc.strerror or exc}", path=self.root) from exc
        lock = FileLock.acquire(self.root / _STORE_LOCK, label="the session store", wait=True)
        # Under this lock nobody is building a session, so hidden leftovers are garbage; so are the
        # lock's own record temp files that a killed holder left.
        for entry in self._hidden_dirs():
            remove_tree(entry)
        sweep_temp_records(self.root / _STORE_LOCK)
        return lock

    def _hidden_dirs(self) -> builtins.list[Path]:
        try:
            return [
                p
                for p in self.root.iterdir()
                if p.name.startswith((_NEW_PREFIX, _FORK_PREFIX, _TRASH_PREFIX)) and p.is_dir()
            ]
        except OSError:
            return []

    def _entries(self) -> builtins.list[Path]:
        """Session folders: visible subfolders (temp and trash folders start with '.')."""
        try:
            entries = sorted(self.root.iterdir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise DiskError(f"cannot read the sessions folder: {exc.strerror or exc}", path=self.root) from exc
        return [p for p in entries if not p.name.startswith(".") and p.is_dir() and not p.is_symlink()]

    def _scan(self) -> tuple[builtins.list[SessionMeta], builtins.list[Problem]]:
        """session.json of every session (no transcripts read)."""
        metas: builtins.list[SessionMeta] = []
        problems: builtins.list[Problem] = []
        for folder in self._entries():
            try:
                metas.append(read_meta(folder)[0])
            except InvalidFileError as exc:
                problems.append(Problem(Path(exc.path or folder), exc.message))
        return metas, problems

    def ensure_name_free(self, name: str) -> None:
        """Fail early (`UsageError` bad name, `ConflictError` taken) before a slow model load.

        Advisory only: `create` checks again under the store lock.
        """
        validate_name(name)
        self._check_name_free(name, metas=self._scan()[0])

    def _check_name_free(self, name: str, *, metas: builtins.list[SessionMeta], own_id: str | None = None) -> None:
        for m in metas:
            if m.id != own_id and (m.name == name or m.id == name):
                raise ConflictError(f"a session named '{name}' already exists", hint=f"weprompt resume {name}")

    @contextmanager
    def claim_name(self, name: str, own_id: str) -> Iterator[None]:
        """Hold the store lock with `name` checked free for session `own_id` (a rename in progress)."""
        with self._store_lock():
            self._check_name_free(name, metas=self._scan()[0], own_id=own_id)
            yield

    def _retention(self) -> Retention:
        return Retention(budget_bytes=self.state_budget_bytes, keep_latest=self.keep_latest)

    # -- finding ------------------------------------------------------------------

    def resolve(self, ref: str) -> SessionMeta:
        """The session named `ref`, with id `ref`, or whose id starts with `ref`."""
        validate_name(ref, what="session name or id")
        folder = inside(self.root, ref)
        if folder.is_dir() and not folder.is_symlink():
            return read_meta(folder)[0]
        metas, _ = self._scan()
        named = [m for m in metas if m.name == ref]
        if len(named) == 1:
            return named[0]
        matches = named or [m for m in metas if m.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NotFoundError(f"no session named '{ref}'", hint="weprompt list-sessions")
        shown = ", ".join(f"{m.id} ({m.name})" if m.name else m.id for m in sorted(matches, key=lambda m: m.id)[:8])
        more = f" and {len(matches) - 8} more" if len(matches) > 8 else ""
        raise UsageError(
            f"'{ref}' matches {len(matches)} sessions: {shown}{more}", hint="give the name or more of the id"
        )

    def last(self) -> SessionMeta:
        """The most recently used session."""
        metas, _ = self._scan()
        if not metas:
            raise NotFoundError("there are no sessions yet", hint="weprompt chat")
        return max(metas, key=sort_key)

    def read(self, ref: str) -> tuple[SessionMeta, builtins.list[Turn], builtins.list[Problem]]:
        """A session's metadata and transcript without locking it (show, export, fork).

        Turns stop before a damaged line, which is reported as a Problem.
        """
        meta = self.resolve(ref)
        read = read_transcript(self.session_dir(meta.id) / TRANSCRIPT)
        return reconcile(meta, read.turns), read.turns, [read.problem] if read.problem else []

    # -- changing -----------------------------------------------------------------

    def create(
        self,
        *,
        name: str | None = None,
        persona: str,
        model_path: str | Path,
        fingerprint: str,
        arch: str,
        chat_format: str,
        sampling: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> OpenSession:
        """A new, empty session, open (locked) by this process."""
        if name is not None:
            validate_name(name)
        with self._store_lock():
            metas, _ = self._scan()
            if name is not None:
                self._check_name_free(name, metas=metas)
            sid = self._new_id(metas)
            now = utc_now()
            meta = SessionMeta(
                id=sid,
                name=name,
                persona=persona,
                model=ModelRef(path=str(model_path), fingerprint=fingerprint, arch=arch),
                chat_format=chat_format,
                sampling=dict(sampling),
                created_at=now,
                updated_at=now,
                extra=dict(extra or {}),
            )
            final = self.session_dir(sid)
            with self._staged(_NEW_PREFIX, sid, "the session") as tmp:
                atomic_write_json(tmp / SESSION_JSON, meta.to_dict())
                # Lock before the folder becomes visible; the flock follows the inode.
                lock = FileLock.acquire(tmp / LOCK, label=f"session {meta.label}")
        lock.path = final / LOCK
        return OpenSession(self.claim_name, self._retention(), final, lock, meta, [])

    def open(self, ref: str) -> OpenSession:
        """The session `ref`, locked for this process (`LockedError` names another holder)."""
        meta = self.resolve(ref)
        folder = self.session_dir(meta.id)
        lock = FileLock.acquire(folder / LOCK, label=f"session {meta.label}")
        try:
            return OpenSession._load(self.claim_name, self._retention(), folder, lock)
        except BaseException:
            lock.release()
            raise

    def delete(self, ref: str) -> SessionMeta:
        """Remove a session and its states (refused while another process has it open)."""
        meta = self.resolve(ref)
        folder = self.session_dir(meta.id)
        with self._store_lock(), FileLock.acquire(folder / LOCK, label=f"session {meta.label}"):
            trash = inside(self.root, f"{_TRASH_PREFIX}{meta.id}")
            try:
                os.rename(folder, trash)
                fsync_dir(self.root)
            except OSError as exc:
                raise DiskError(f"cannot delete the session: {exc.strerror or exc}", path=folder) from exc
        remove_tree(trash)
        return meta

    def rename(self, ref: str, new_name: str) -> SessionMeta:
        """Give a session a new name (refused if taken or while the session is open elsewhere)."""
        validate_name(new_name)
        meta = self.resolve(ref)
        folder = self.session_dir(meta.id)
        with self._store_lock(), FileLock.acquire(folder / LOCK, label=f"session {meta.label}"):
            self._check_name_free(new_name, metas=self._scan()[0], own_id=meta.id)
            meta, _ = read_meta(folder)
            meta = meta.replace(name=new_name)
            atomic_write_json(folder / SESSION_JSON, meta.to_dict())
        return meta

    def _new_id(self, metas: builtins.list[SessionMeta]) -> str:
        """A session id not used by `metas` nor by any folder."""
        taken = {m.id for m in metas}
        sid = new_session_id()
        while sid in taken or (self.root / sid).exists():
            sid = new_session_id()
        return sid

    @contextmanager
    def _staged(self, prefix: str, sid: str, what: str) -> Iterator[Path]:
        """A hidden folder (with `states/`) to fill; on success renamed to the session `sid`.

        Nothing half-made is ever listed: on any failure the folder is removed.
        """
        tmp = inside(self.root, prefix + sid)
        final = self.session_dir(sid)
        try:
            (tmp / STATES).mkdir(parents=True)
            yield tmp
            os.rename(tmp, final)
            fsync_dir(self.root)
        except OSError as exc:
            remove_tree(tmp)
            raise DiskError(f"cannot create {what}: {exc.strerror or exc}", path=final) from exc
        except BaseException:
            remove_tree(tmp)
            raise

    def fork(self, ref: str, at_turn: int, new_name: str | None = None) -> SessionMeta:
        """A new session holding `ref`'s turns 1..at_turn and their states (hard links)."""
        if new_name is not None:
            validate_name(new_name)
        src, turns, problems = self.read(ref)
        if not 0 <= at_turn <= len(turns):
            why = f" (transcript damaged after turn {len(turns)})" if problems else ""
            raise UsageError(f"session {src.label} has turns 0..{len(turns)}{why}; cannot fork at turn {at_turn}")
        src_dir = self.session_dir(src.id)
        with self._store_lock():
            metas, _ = self._scan()
            if new_name is not None:
                self._check_name_free(new_name, metas=metas)
            elif src.name is not None:
                new_name = self._free_fork_name(src.name, at_turn, metas)
            sid = self._new_id(metas)
            now = utc_now()
            kept = turns[:at_turn]
            meta = src.replace(
                id=sid,
                name=new_name,
                created_at=now,
                updated_at=now,
                turns=len(kept),
                tokens=total_tokens(kept),
                parent=ParentRef(session=src.id, turn=at_turn),
            )
            with self._staged(_FORK_PREFIX, sid, "the fork") as tmp:
                for k, path in state_files(src_dir / STATES).items():
                    if k <= at_turn:
                        link_or_copy(path, tmp / STATES / path.name)
                atomic_write_text(tmp / TRANSCRIPT, transcript_text(kept))
                atomic_write_json(tmp / SESSION_JSON, meta.to_dict())
        return meta

    @staticmethod
    def _free_fork_name(base: str, at_turn: int, metas: builtins.list[SessionMeta]) -> str | None:
        used = {m.name for m in metas} | {m.id for m in metas}
        for n in range(1, 100):
            candidate = f"{base}-at{at_turn}" + (f"-{n}" if n > 1 else "")
            if len(candidate) <= MAX_NAME_LEN and candidate not in used:
                return candidate
        return None

    def list(self, persona: str | None = None) -> tuple[builtins.list[SessionMeta], builtins.list[Problem]]:
        """Every readable session, newest first, and the damage found on the way.

        A session whose transcript is damaged still lists (counted up to the damage).
        """
        metas: builtins.list[SessionMeta] = []
        problems: builtins.list[Problem] = []
        for folder in self._entries():
            try:
                meta, _ = read_meta(folder)
            except InvalidFileError as exc:
                problems.append(Problem(Path(exc.path or folder), exc.message))
                continue
            read = read_transcript(folder / TRANSCRIPT)
            if read.problem:
                problems.append(read.problem)
            if persona is None or meta.persona == persona:
                metas.append(reconcile(meta, read.turns))
        metas.sort(key=sort_key, reverse=True)
        return metas, problems
