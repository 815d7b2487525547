"""Regenerate the bundled samples (hand-written for Codetron; no third-party data).

    python data/samples/build_samples.py

the_stack_sample.jsonl / .parquet  The Stack-style code records (content, max_stars_*, lang)
commitpack_sample.jsonl            CommitPack-style commits: CommitPackFT keeps some, drops the rest
evol_instruct_sample.json          Evol-Instruct-style JSON array (instruction, [input], output)
"""
import json
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent


def d(s: str) -> str:
    return textwrap.dedent(s).lstrip("\n")


# ---------------------------------------------------------------------------------------------
CODE = [
    ("acme/geometry", "geometry/vector.py", 412, "Python", d('''
        """Small 2-D vector type used by the layout engine."""
        from __future__ import annotations

        import math
        from dataclasses import dataclass


        @dataclass(frozen=True)
        class Vec2:
            x: float
            y: float

            def __add__(self, other: "Vec2") -> "Vec2":
                return Vec2(self.x + other.x, self.y + other.y)

            def __sub__(self, other: "Vec2") -> "Vec2":
                return Vec2(self.x - other.x, self.y - other.y)

            def scale(self, k: float) -> "Vec2":
                return Vec2(self.x * k, self.y * k)

            def dot(self, other: "Vec2") -> float:
                return self.x * other.x + self.y * other.y

            def norm(self) -> float:
                return math.hypot(self.x, self.y)

            def normalized(self) -> "Vec2":
                n = self.norm()
                if n == 0:
                    raise ValueError("cannot normalize the zero vector")
                return self.scale(1.0 / n)
        ''')),
    ("acme/geometry", "geometry/polygon.py", 412, "Python", d('''
        from typing import Sequence

        from .vector import Vec2


        def area(points: Sequence[Vec2]) -> float:
            """Signed area by the shoelace formula (positive for counter-clockwise)."""
            total = 0.0
            for i, p in enumerate(points):
                q = points[(i + 1) % len(points)]
                total += p.x * q.y - q.x * p.y
            return total / 2.0


        def centroid(points: Sequence[Vec2]) -> Vec2:
            a = area(points)
            if a == 0:
                raise ValueError("degenerate polygon")
            cx = cy = 0.0
            for i, p in enumerate(points):
                q = points[(i + 1) % len(points)]
                cross = p.x * q.y - q.x * p.y
                cx += (p.x + q.x) * cross
                cy += (p.y + q.y) * cross
            return Vec2(cx / (6 * a), cy / (6 * a))
        ''')),
    ("lumen-io/retry", "src/retry.ts", 2310, "TypeScript", d('''
        export interface RetryOptions {
          attempts: number;
          baseDelayMs: number;
          maxDelayMs?: number;
        }

        const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

        export async function retry<T>(fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
          let lastError: unknown;
          for (let attempt = 0; attempt < opts.attempts; attempt++) {
            try {
              return await fn();
            } catch (err) {
              lastError = err;
              const delay = Math.min(opts.baseDelayMs * 2 ** attempt, opts.maxDelayMs ?? Infinity);
              await sleep(delay);
            }
          }
          throw lastError;
        }
        ''')),
    ("kettle/kv", "store/lru.go", 87, "Go", d('''
        package store

        import "container/list"

        // LRU is a fixed-size cache evicting the least recently used key.
        type LRU struct {
        	capacity int
        	order    *list.List
        	items    map[string]*list.Element
        }

        type entry struct {
        	key   string
        	value []byte
        }

        func NewLRU(capacity int) *LRU {
        	return &LRU{capacity: capacity, order: list.New(), items: make(map[string]*list.Element)}
        }

        func (c *LRU) Get(key string) ([]byte, bool) {
        	if el, ok := c.items[key]; ok {
        		c.order.MoveToFront(el)
        		return el.Value.(*entry).value, true
        	}
        	return nil, false
        }

        func (c *LRU) Put(key string, value []byte) {
        	if el, ok := c.items[key]; ok {
        		el.Value.(*entry).value = value
        		c.order.MoveToFront(el)
        		return
        	}
        	c.items[key] = c.order.PushFront(&entry{key, value})
        	if c.order.Len() > c.capacity {
        		oldest := c.order.Back()
        		c.order.Remove(oldest)
        		delete(c.items, oldest.Value.(*entry).key)
        	}
        }
        ''')),
    ("northwind/ledger", "src/main/java/org/northwind/ledger/Money.java", 5, "Java", d('''
        package org.northwind.ledger;

        import java.math.BigDecimal;
        import java.math.RoundingMode;
        import java.util.Objects;

        public final class Money {
            private final BigDecimal amount;
            private final String currency;

            public Money(BigDecimal amount, String currency) {
                this.amount = amount.setScale(2, RoundingMode.HALF_EVEN);
                this.currency = Objects.requireNonNull(currency);
            }

            public Money plus(Money other) {
                requireSameCurrency(other);
                return new Money(amount.add(other.amount), currency);
            }

            private void requireSameCurrency(Money other) {
                if (!currency.equals(other.currency)) {
                    throw new IllegalArgumentException("currency mismatch: " + currency + " vs " + other.currency);
                }
            }

            @Override
            public String toString() {
                return amount.toPlainString() + " " + currency;
            }
        }
        ''')),
    ("tinyfs/blockdev", "src/bitmap.rs", 0, "Rust", d('''
        /// Free-block bitmap: bit i set means block i is in use.
        pub struct Bitmap {
            words: Vec<u64>,
        }

        impl Bitmap {
            pub fn new(blocks: usize) -> Self {
                Bitmap { words: vec![0; (blocks + 63) / 64] }
            }

            pub fn set(&mut self, i: usize) {
                self.words[i / 64] |= 1 << (i % 64);
            }

            pub fn clear(&mut self, i: usize) {
                self.words[i / 64] &= !(1 << (i % 64));
            }

            pub fn first_free(&self) -> Option<usize> {
                self.words
                    .iter()
                    .enumerate()
                    .find(|(_, w)| **w != u64::MAX)
                    .map(|(i, w)| i * 64 + w.trailing_ones() as usize)
            }
        }
        ''')),
    ("acme/cli-tools", "scripts/rotate_logs.sh", 14, "Shell", d('''
        #!/usr/bin/env bash
        # Keep the newest $KEEP compressed logs per service.
        set -euo pipefail
        LOG_DIR=${1:-/var/log/acme}
        KEEP=${KEEP:-7}
        for service in "$LOG_DIR"/*/; do
          ls -1t "$service"*.log.gz 2>/dev/null | tail -n +$((KEEP + 1)) | xargs -r rm --
        done
        ''')),
    ("datalab/etl", "etl/csv_stats.py", 56, "Python", d('''
        import csv
        import statistics
        import sys


        def column_stats(path, column):
            """Mean, median and standard deviation of a numeric CSV column (blank cells skipped)."""
            values = []
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh):
                    cell = row.get(column, "").strip()
                    if cell:
                        values.append(float(cell))
            if len(values) < 2:
                raise ValueError(f"need at least two values in column {column!r}")
            return {
                "count": len(values),
                "mean": statistics.fmean(values),
                "median": statistics.median(values),
                "stdev": statistics.stdev(values),
            }


        if __name__ == "__main__":
            print(column_stats(sys.argv[1], sys.argv[2]))
        ''')),
    ("webkitty/ui", "src/components/debounce.js", 1203, "JavaScript", d('''
        /**
         * Returns a function that delays calling `fn` until `wait` ms have passed
         * since the last call. `flush()` runs a pending call immediately.
         */
        export function debounce(fn, wait) {
          let timer = null;
          let lastArgs = null;
          function debounced(...args) {
            lastArgs = args;
            clearTimeout(timer);
            timer = setTimeout(() => {
              timer = null;
              fn(...lastArgs);
            }, wait);
          }
          debounced.flush = () => {
            if (timer !== null) {
              clearTimeout(timer);
              timer = null;
              fn(...lastArgs);
            }
          };
          return debounced;
        }
        ''')),
    ("systemsclub/arena", "arena.c", 33, "C", d('''
        #include <stddef.h>
        #include <stdint.h>
        #include <stdlib.h>

        typedef struct {
            uint8_t *base;
            size_t used;
            size_t capacity;
        } Arena;

        int arena_init(Arena *a, size_t capacity) {
            a->base = malloc(capacity);
            a->used = 0;
            a->capacity = capacity;
            return a->base ? 0 : -1;
        }

        void *arena_alloc(Arena *a, size_t size, size_t align) {
            size_t start = (a->used + align - 1) & ~(align - 1);
            if (start + size > a->capacity) {
                return NULL;
            }
            a->used = start + size;
            return a->base + start;
        }

        void arena_reset(Arena *a) { a->used = 0; }

        void arena_free(Arena *a) {
            free(a->base);
            a->base = NULL;
            a->used = a->capacity = 0;
        }
        ''')),
]


def code_records():
    recs = [
        {"content": c, "max_stars_repo_name": r, "max_stars_repo_path": p, "max_stars_count": s, "lang": l,
         "ext": p.rsplit(".", 1)[-1]}
        for r, p, s, l, c in CODE
    ]
    # An exact copy (vendored file) and a near copy (same file, one line changed) for dedup.
    dup = dict(recs[0], max_stars_repo_name="forks/geometry-copy", max_stars_count=0)
    near = dict(recs[7], max_stars_repo_name="datalab/etl-fork", max_stars_count=1,
                content=recs[7]["content"].replace("blank cells skipped", "empty cells are skipped"))
    # A file that embeds a HumanEval problem (contamination).
    contaminated = {
        "content": d('''
            from typing import List


            def has_close_elements(numbers: List[float], threshold: float) -> bool:
                """ Check if in given list of numbers, are any two numbers closer to each other than
                given threshold.
                >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
                False
                >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
                True
                """
                for idx, elem in enumerate(numbers):
                    for idx2, elem2 in enumerate(numbers):
                        if idx != idx2:
                            distance = abs(elem - elem2)
                            if distance < threshold:
                                return True

                return False
            '''),
        "max_stars_repo_name": "someone/leetcode-dump", "max_stars_repo_path": "humaneval/0.py",
        "max_stars_count": 3, "lang": "Python", "ext": "py",
    }
    return recs + [dup, near, contaminated]


# ---------------------------------------------------------------------------------------------
BASE_CONFIG = d('''
    import json
    import os


    DEFAULTS = {
        "host": "127.0.0.1",
        "port": 8080,
        "workers": 4,
        "log_level": "info",
    }


    def load_config(path):
        with open(path) as fh:
            data = json.load(fh)
        config = dict(DEFAULTS)
        config.update(data)
        return config
    ''')

KEEP_COMMITS = [
    # (subject, old, new, lang, file)
    ("Allow overriding config values from environment variables", BASE_CONFIG, BASE_CONFIG.replace(
        "    config.update(data)\n    return config\n",
        "    config.update(data)\n    for key in DEFAULTS:\n        env = os.environ.get(\"APP_\" + key.upper())\n"
        "        if env is not None:\n            config[key] = type(DEFAULTS[key])(env)\n    return config\n"), "Python", "app/settings.py"),
    ("Raise a clear error when the config file is missing", BASE_CONFIG, BASE_CONFIG.replace(
        "    with open(path) as fh:\n",
        "    if not os.path.exists(path):\n        raise FileNotFoundError(f\"config file not found: {path}\")\n    with open(path) as fh:\n"),
     "Python", "app/settings.py"),
    ("Add type hints to the geometry helpers", d('''
        import math


        def distance(a, b):
            return math.hypot(a[0] - b[0], a[1] - b[1])


        def midpoint(a, b):
            return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


        def lerp(a, b, t):
            return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
        '''), d('''
        import math
        from typing import Tuple

        Point = Tuple[float, float]


        def distance(a: Point, b: Point) -> float:
            return math.hypot(a[0] - b[0], a[1] - b[1])


        def midpoint(a: Point, b: Point) -> Point:
            return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


        def lerp(a: Point, b: Point, t: float) -> Point:
            return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
        '''), "Python", "geometry/points.py"),
    ("Fix off-by-one error in pagination helper", d('''
        def paginate(items, page, per_page):
            """Return the items of a 1-based page."""
            start = page * per_page
            end = start + per_page
            return items[start:end]


        def page_count(total, per_page):
            return total // per_page
        '''), d('''
        def paginate(items, page, per_page):
            """Return the items of a 1-based page."""
            start = (page - 1) * per_page
            end = start + per_page
            return items[start:end]


        def page_count(total, per_page):
            return (total + per_page - 1) // per_page
        '''), "Python", "web/pages.py"),
    ("Use a context manager to close the database connection", d('''
        import sqlite3


        def count_users(db_path):
            conn = sqlite3.connect(db_path)
            cur = conn.execute("SELECT COUNT(*) FROM users")
            (n,) = cur.fetchone()
            conn.close()
            return n
        '''), d('''
        import sqlite3
        from contextlib import closing


        def count_users(db_path):
            with closing(sqlite3.connect(db_path)) as conn:
                (n,) = conn.execute("SELECT COUNT(*) FROM users").fetchone()
            return n
        '''), "Python", "db/users.py"),
    ("Handle empty input in the median function", d('''
        function median(values) {
          const sorted = [...values].sort((a, b) => a - b);
          const mid = Math.floor(sorted.length / 2);
          return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
        }

        module.exports = { median };
        '''), d('''
        function median(values) {
          if (values.length === 0) {
            throw new RangeError("median of an empty list is undefined");
          }
          const sorted = [...values].sort((a, b) => a - b);
          const mid = Math.floor(sorted.length / 2);
          return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
        }

        module.exports = { median };
        '''), "JavaScript", "lib/stats.js"),
    ("Replace manual loop with a list comprehension", d('''
        def even_squares(numbers):
            result = []
            for n in numbers:
                if n % 2 == 0:
                    result.append(n * n)
            return result


        def odd_cubes(numbers):
            result = []
            for n in numbers:
                if n % 2 == 1:
                    result.append(n ** 3)
            return result
        '''), d('''
        def even_squares(numbers):
            return [n * n for n in numbers if n % 2 == 0]


        def odd_cubes(numbers):
            return [n ** 3 for n in numbers if n % 2 == 1]
        '''), "Python", "utils/numbers.py"),
    ("Add timeout parameter to the HTTP fetch helper", d('''
        import urllib.request


        def fetch(url):
            with urllib.request.urlopen(url) as resp:
                return resp.read().decode("utf-8")


        def fetch_json(url):
            import json

            return json.loads(fetch(url))
        '''), d('''
        import urllib.request


        def fetch(url, timeout=10.0):
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.read().decode("utf-8")


        def fetch_json(url, timeout=10.0):
            import json

            return json.loads(fetch(url, timeout=timeout))
        '''), "Python", "net/http.py"),
]


def commit_record(i, subject, old, new, lang, path, message=None, repos="acme/service"):
    return {
        "commit": f"{(i * 2654435761) % (1 << 160):040x}",
        "old_file": path, "new_file": path,
        "old_contents": old, "new_contents": new,
        "subject": subject, "message": message or subject,
        "lang": lang, "license": "mit", "repos": repos,
    }


def commit_records():
    recs = [commit_record(i, *c) for i, c in enumerate(KEEP_COMMITS)]
    small_old = KEEP_COMMITS[3][1]
    small_new = KEEP_COMMITS[3][2]
    drops = [
        # (expected rule, subject, old, new, message); the file is web/paging.py (not named in any subject)
        ("old_file_too_long", "Fix typo in the generated lookup table", "x = 1\n" * 9000, "x = 2\n" + "x = 1\n" * 8999, None),
        ("new_file_empty", "Remove the body of the pagination helper", small_old, "", None),
        ("unchanged", "Reformat the pagination helper module", small_old, small_old, None),
        ("issue_reference", "Fix off-by-one error in pagination helper (#42)", small_old, small_new, None),
        ("subject_length", "Fix bug", small_old, small_new, None),
        ("subject_too_few_words", "Refactored pagination helpers", small_old, small_new, None),
        ("not_capitalized", "fix the off-by-one error in paginate", small_old, small_new, None),
        ("not_imperative", "Pagination helper now handles the last page", small_old, small_new, None),
        ("bad_message", "Merge branch 'feature/pagination' into main", small_old, small_new, None),
        ("version_or_hash", "Release the pagination fix as 2.4.1 today", small_old, small_new, None),
        ("version_or_hash", "Revert commit 3f9a2c7e1b0d4c5a6e7f8091a2b3c4d5e6f70812 in paginate", small_old, small_new, None),
        ("cherry_pick", "Fix off-by-one error in pagination helper (cherry picked from commit 9c1d2e3f)", small_old, small_new, None),
        ("first_person", "Fix the pagination bug I introduced yesterday", small_old, small_new, None),
        ("url", "Fix pagination as described in https://tracker.example.org/issues/42", small_old, small_new, None),
        ("wip", "Add pagination helpers for the admin panel (WIP)", small_old, small_new, None),
        ("bump_version", "Bump version of the pagination package", small_old, small_new, None),
        ("token_count", "Add a default value to the retries setting", "RETRIES = 3\n", "RETRIES = 5\n", None),
    ]
    # one more drop: the file name in the subject (the documents do not show it)
    recs.append(commit_record(99, "Fix rounding in the paging module", small_old, small_new, "Python", "web/paging.py"))
    for j, (_, subject, old, new, message) in enumerate(drops):
        recs.append(commit_record(100 + j, subject, old, new, "Python", "web/paging.py", message))
    return recs, ["filename_in_subject"] + [r for r, *_ in drops]


# ---------------------------------------------------------------------------------------------
EVOL = [
    {"instruction": "Write a Python function `is_palindrome(s)` that returns True if the string reads the same "
                    "forwards and backwards, ignoring case and any non-alphanumeric characters.",
     "output": "```python\ndef is_palindrome(s: str) -> bool:\n    cleaned = [c.lower() for c in s if c.isalnum()]\n"
               "    return cleaned == cleaned[::-1]\n```\n\nThe function keeps only letters and digits, lower-cases them "
               "and compares the list with its reverse, so `is_palindrome(\"A man, a plan, a canal: Panama\")` is True."},
    {"instruction": "Implement binary search over a sorted list. Return the index of the target, or -1 if it is "
                    "absent. Your solution must run in O(log n) time and must not use the bisect module.",
     "output": "```python\ndef binary_search(items, target):\n    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n"
               "        mid = (lo + hi) // 2\n        if items[mid] == target:\n            return mid\n"
               "        if items[mid] < target:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n"
               "    return -1\n```"},
    {"instruction": "Write a SQL query that returns the three departments with the highest average salary.",
     "input": "Table employees(id INTEGER, name TEXT, department TEXT, salary REAL)",
     "output": "```sql\nSELECT department, AVG(salary) AS avg_salary\nFROM employees\nGROUP BY department\n"
               "ORDER BY avg_salary DESC\nLIMIT 3;\n```"},
    {"instruction": "Refactor the following JavaScript so it uses async/await instead of promise chains, and add "
                    "error handling that logs the failure and returns null.",
     "input": "function loadUser(id) {\n  return fetch(`/api/users/${id}`).then(r => r.json()).then(u => u.profile);\n}",
     "output": "```javascript\nasync function loadUser(id) {\n  try {\n    const response = await fetch(`/api/users/${id}`);\n"
               "    const user = await response.json();\n    return user.profile;\n  } catch (err) {\n"
               "    console.error(`loading user ${id} failed`, err);\n    return null;\n  }\n}\n```"},
    {"instruction": "Create a Python class `Stack` with push, pop, peek and is_empty methods. Popping or peeking an "
                    "empty stack should raise IndexError with a helpful message.",
     "output": "```python\nclass Stack:\n    def __init__(self):\n        self._items = []\n\n    def push(self, item):\n"
               "        self._items.append(item)\n\n    def pop(self):\n        if not self._items:\n"
               "            raise IndexError(\"pop from an empty stack\")\n        return self._items.pop()\n\n"
               "    def peek(self):\n        if not self._items:\n            raise IndexError(\"peek at an empty stack\")\n"
               "        return self._items[-1]\n\n    def is_empty(self):\n        return not self._items\n```"},
    {"instruction": "Write a function that counts word frequencies in a text and returns the ten most common words. "
                    "Treat words case-insensitively and strip punctuation; increase the difficulty by making it "
                    "stream over a file object line by line instead of reading it whole.",
     "output": "```python\nimport re\nfrom collections import Counter\n\n\ndef top_words(fh, n=10):\n    counts = Counter()\n"
               "    for line in fh:\n        counts.update(re.findall(r\"[a-z']+\", line.lower()))\n"
               "    return counts.most_common(n)\n```"},
    {"instruction": "Explain the difference between a process and a thread, then show a Python example that runs "
                    "a CPU-bound function on all cores.",
     "output": "A process has its own address space; threads share the memory of their process. In CPython the GIL "
               "lets only one thread run Python bytecode at a time, so CPU-bound work needs processes:\n\n```python\n"
               "from concurrent.futures import ProcessPoolExecutor\n\n\ndef work(n):\n    return sum(i * i for i in range(n))\n\n\n"
               "if __name__ == \"__main__\":\n    with ProcessPoolExecutor() as pool:\n"
               "        print(list(pool.map(work, [10**6] * 8)))\n```"},
    {"instruction": "Write a Go function that reverses a slice of integers in place.",
     "output": "```go\nfunc Reverse(s []int) {\n\tfor i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {\n"
               "\t\ts[i], s[j] = s[j], s[i]\n\t}\n}\n```"},
    {"instruction": "Given a list of intervals, merge all overlapping intervals. Add the constraint that the input "
                    "may be unsorted and may contain intervals given as [end, start].",
     "output": "```python\ndef merge_intervals(intervals):\n    spans = sorted((min(a, b), max(a, b)) for a, b in intervals)\n"
               "    merged = []\n    for start, end in spans:\n        if merged and start <= merged[-1][1]:\n"
               "            merged[-1][1] = max(merged[-1][1], end)\n        else:\n            merged.append([start, end])\n"
               "    return merged\n```"},
    {"instruction": "Write a bash one-liner that prints the five largest files under the current directory.",
     "output": "```bash\nfind . -type f -printf '%s %p\\n' | sort -nr | head -n 5\n```"},
    # an exact duplicate (dropped by exact dedup)
    {"instruction": "Write a Go function that reverses a slice of integers in place.",
     "output": "```go\nfunc Reverse(s []int) {\n\tfor i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {\n"
               "\t\ts[i], s[j] = s[j], s[i]\n\t}\n}\n```"},
    # a HumanEval problem with its solution (dropped by decontamination)
    {"instruction": "Complete the function below.\n\ndef below_zero(operations: List[int]) -> bool:\n"
                    "    \"\"\" You're given a list of deposit and withdrawal operations on a bank account that starts with\n"
                    "    zero balance. Your task is to detect if at any point the balance of account fallls below zero, and\n"
                    "    at that point function should return True. Otherwise it should return False.\n    \"\"\"",
     "output": "    balance = 0\n\n    for op in operations:\n        balance += op\n        if balance < 0:\n"
               "            return True\n\n    return False\n"},
]


def main():
    code = code_records()
    with open(HERE / "the_stack_sample.jsonl", "w", encoding="utf-8") as fh:
        for r in code:
            fh.write(json.dumps(r) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(code), HERE / "the_stack_sample.parquet")
    commits, expected = commit_records()
    with open(HERE / "commitpack_sample.jsonl", "w", encoding="utf-8") as fh:
        for r in commits:
            fh.write(json.dumps(r) + "\n")
    (HERE / "commitpack_sample_expected_drops.json").write_text(json.dumps(expected, indent=1) + "\n")
    (HERE / "evol_instruct_sample.json").write_text(json.dumps(EVOL, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
