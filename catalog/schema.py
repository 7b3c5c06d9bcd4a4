"""catalog.db's schema: the numbered migrations of its tables, and a row of `images` read back as a record."""

from __future__ import annotations

import json
import sqlite3

import aiosqlite

from catalog import animations, path_migration, words
from catalog.paths import PathForm
from catalog.records import ImageRecord, Relation
from core.sqlite import Migration

MIGRATIONS: tuple[Migration, ...] = (
    (
        "create catalog",
        """
        CREATE TABLE images (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild TEXT NOT NULL,
            channel TEXT,
            message TEXT,
            author TEXT NOT NULL,
            created REAL NOT NULL,
            path TEXT NOT NULL,
            filename TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            model TEXT,
            model_hash TEXT,
            sampler TEXT,
            schedule TEXT,
            steps INTEGER,
            cfg REAL,
            seed INTEGER,
            prompt TEXT NOT NULL DEFAULT '',
            negative_prompt TEXT NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '',
            infotext TEXT NOT NULL DEFAULT '',
            networks TEXT NOT NULL DEFAULT '[]',
            parent_id INTEGER REFERENCES images (id) ON DELETE SET NULL,
            relation TEXT,
            nsfw INTEGER NOT NULL DEFAULT 0,
            deleted_at REAL,
            recycled_path TEXT,
            rank_mean REAL,
            rank_count INTEGER NOT NULL DEFAULT 0,
            job_id INTEGER,
            indexed INTEGER NOT NULL DEFAULT 0,
            UNIQUE (guild, path)
        );
        CREATE INDEX images_by_date ON images (guild, deleted_at, created);
        CREATE INDEX images_by_rank ON images (guild, deleted_at, rank_mean);
        CREATE INDEX images_by_author ON images (guild, author, created);
        CREATE INDEX images_by_model ON images (guild, model, created);
        CREATE INDEX images_unindexed ON images (indexed) WHERE indexed = 0;
        CREATE INDEX images_by_path ON images (path);
        CREATE TABLE ratings (
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            user TEXT NOT NULL,
            score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
            rated_at REAL NOT NULL,
            PRIMARY KEY (image_id, user)
        );
        CREATE TABLE favourites (
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            user TEXT NOT NULL,
            added_at REAL NOT NULL,
            PRIMARY KEY (user, image_id)
        );
        CREATE TABLE galleries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild TEXT NOT NULL,
            name TEXT NOT NULL,
            owner TEXT NOT NULL,
            created REAL NOT NULL,
            UNIQUE (guild, name)
        );
        CREATE TABLE gallery_images (
            gallery_id INTEGER NOT NULL REFERENCES galleries (id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            PRIMARY KEY (gallery_id, image_id)
        )
        """,
    ),
    (
        "trigram index for exact searches",
        (
            "CREATE VIRTUAL TABLE images_text USING fts5(prompt, negative_prompt, params, "
            "content='images', content_rowid='id', tokenize='trigram')",
            "CREATE TRIGGER images_text_insert AFTER INSERT ON images BEGIN "
            "INSERT INTO images_text (rowid, prompt, negative_prompt, params) "
            "VALUES (new.id, new.prompt, new.negative_prompt, new.params); END",
            "CREATE TRIGGER images_text_delete AFTER DELETE ON images BEGIN "
            "INSERT INTO images_text (images_text, rowid, prompt, negative_prompt, params) "
            "VALUES ('delete', old.id, old.prompt, old.negative_prompt, old.params); END",
            "CREATE TRIGGER images_text_update AFTER UPDATE OF prompt, negative_prompt, params ON images BEGIN "
            "INSERT INTO images_text (images_text, rowid, prompt, negative_prompt, params) "
            "VALUES ('delete', old.id, old.prompt, old.negative_prompt, old.params); "
            "INSERT INTO images_text (rowid, prompt, negative_prompt, params) "
            "VALUES (new.id, new.prompt, new.negative_prompt, new.params); END",
            "INSERT INTO images_text (images_text) VALUES ('rebuild')",
        ),
    ),
    ("word index in SQLite", words.MIGRATION),
    (
        "images by message and by job",
        "CREATE INDEX images_by_message ON images (message); CREATE INDEX images_by_job ON images (job_id)",
    ),
    (
        "gallery posts",
        """
        CREATE TABLE gallery_posts (
            guild TEXT NOT NULL,
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            channel TEXT,
            message TEXT,
            posted_at REAL NOT NULL,
            PRIMARY KEY (guild, image_id)
        );
        CREATE INDEX gallery_images_by_image ON gallery_images (image_id)
        """,
    ),
    path_migration.MIGRATION,
    ("images by parent", "CREATE INDEX images_by_parent ON images (parent_id)"),  # catalog/lineage.py
    animations.MIGRATION,  # an animation item's video and settings file (catalog/animations.py)
)


def record_of(row: sqlite3.Row | aiosqlite.Row, paths: PathForm | None = None) -> ImageRecord:
    """The record of a row; with `paths`, its path absolute (without, as stored: for the text index)."""
    return ImageRecord(
        id=row["id"],
        guild=row["guild"],
        channel=row["channel"],
        message=row["message"],
        author=row["author"],
        created=row["created"],
        path=paths.absolute(row["path"]) if paths is not None else row["path"],
        filename=row["filename"],
        sha256=row["sha256"],
        width=row["width"],
        height=row["height"],
        model=row["model"],
        model_hash=row["model_hash"],
        sampler=row["sampler"],
        schedule=row["schedule"],
        steps=row["steps"],
        cfg=row["cfg"],
        seed=row["seed"],
        prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        params=row["params"],
        infotext=row["infotext"],
        networks=tuple(json.loads(row["networks"])),
        parent_id=row["parent_id"],
        relation=Relation(row["relation"]) if row["relation"] else None,
        nsfw=bool(row["nsfw"]),
        deleted_at=row["deleted_at"],
        rank_mean=row["rank_mean"],
        rank_count=row["rank_count"],
        job_id=row["job_id"],
    )
