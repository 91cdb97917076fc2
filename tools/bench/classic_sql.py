#!/usr/bin/env python3
"""The classic design presenced replaces, as a Django backend does it on
SQLite: one autocommit UPDATE of users.last_activity per heartbeat and one
SELECT of recent ids per "who is online" poll. Prints key=value lines.

  classic_sql.py DB --users 100000 --updates 2000
"""
import argparse
import sqlite3
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("--users", type=int, default=100000)
    p.add_argument("--updates", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()

    # Django's defaults on SQLite: rollback journal, synchronous=FULL.
    db = sqlite3.connect(a.db, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS users "
               "(id INTEGER PRIMARY KEY, last_activity REAL NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS users_last_activity "
               "ON users (last_activity)")
    now = time.time()
    db.execute("BEGIN")
    db.executemany("INSERT OR REPLACE INTO users VALUES (?, ?)",
                   ((i, now) for i in range(1, a.users + 1)))
    db.execute("COMMIT")

    update_rates, list_ms = [], []
    for _ in range(a.rounds):
        start = time.perf_counter()
        for i in range(a.updates):
            db.execute("UPDATE users SET last_activity = ? WHERE id = ?",
                       (time.time(), 1 + (i * 7919) % a.users))
        update_rates.append(a.updates / (time.perf_counter() - start))
        start = time.perf_counter()
        rows = db.execute("SELECT id FROM users WHERE last_activity >= ?",
                          (time.time() - 300,)).fetchall()
        list_ms.append((time.perf_counter() - start) * 1000)
    update_rates.sort()
    list_ms.sort()
    print("updates_per_second=%.0f list_ms=%.1f listed=%d" %
          (update_rates[len(update_rates) // 2], list_ms[len(list_ms) // 2],
           len(rows)))


if __name__ == "__main__":
    main()
