"""A markdown checklist against the real stack: its sql blocks through the
sql primitive against PostgreSQL (a SELECT runs, also in a dry run; an
UPDATE is confirmed; a DELETE FROM needs the target's name typed), its
redis-cli line against a real Redis, and its import: Lua that passes check
and shows the same plan."""
import unittest

from dbcase import DbTestCase
from servers.redis import RedisServer


DOC = """# Orders incident

Use on the stage target.

## Investigate

- Cache: `redis-cli -h 127.0.0.1 -p {redis_port} ping`
- Rows: `psql "$DATABASE_URL" -Atc "select 'rows=' || count(*) from orders"`

```sql
SELECT count(*) AS n FROM orders;
```

## Fix the totals

```sql
UPDATE orders SET total = 0 WHERE id = 1;
```

## Drop the test orders

- [ ] Get approval from the incident lead

```sql
DELETE FROM orders WHERE id > 100;
```
"""

ANSWERS = """[*] Run SQL: UPDATE orders SET total = 0 WHERE id = 1 = yes
[*] Get approval from the incident lead = done
[*] Destructive SQL: DELETE FROM orders WHERE id > 100 -- type stage to run it = stage
"""


def setUpModule():
    DbTestCase.start_cluster()


def tearDownModule():
    DbTestCase.stop_cluster()


class MarkdownStack(DbTestCase):
    REDIS = None

    @classmethod
    def setUpClass(cls):
        cls.REDIS = RedisServer()

    @classmethod
    def tearDownClass(cls):
        cls.REDIS.stop()

    def setUp(self):
        super().setUp()
        self.populate()
        self.write_config('targets = { stage = { db = %r } }\n' % self.url)
        self.doc = self.write("orders.md", DOC.format(redis_port=self.REDIS.port))
        self.answers = self.write("answers.txt", ANSWERS)

    def test_dry_run_runs_the_reads_and_changes_nothing(self):
        p = self.run_book(self.doc, "--target", "stage", "--dry-run", "--answers", self.answers)
        self.assertExit(p, 0)
        self.assertIn("| PONG", p.stdout)                          # redis-cli ran for real
        self.assertIn("n=120", p.stdout)                           # the SELECT ran for real
        self.assertIn("| rows=120", p.stdout)     # psql with $DATABASE_URL from the target's db
        self.assertEqual(self.query("select count(*) from orders"), "120")
        self.assertEqual(self.query("select total from orders where id = 1"), "1.5")
        self.assertExit(self.run_rb("verify", self.transcript), 0)

    def test_a_real_run_runs_the_confirmed_writes(self):
        p = self.run_book(self.doc, "--target", "stage", "--answers", self.answers)
        self.assertExit(p, 0)
        self.assertEqual(self.query("select total from orders where id = 1"), "0")
        self.assertEqual(self.query("select count(*) from orders"), "100")
        self.assertExit(self.run_rb("verify", self.transcript), 0)
        self.assertNotIn(self.url.split("@")[0].split(":")[-1], open(self.transcript).read(),
                         "the database password reached the transcript")

    def test_a_wrong_typed_name_runs_nothing_destructive(self):
        answers = self.write("a2.txt", ANSWERS.replace("= stage\n", "= prod\n"))
        p = self.run_book(self.doc, "--target", "stage", "--answers", answers, "--yes")
        self.assertExit(p, 1)
        self.assertIn("not run: stage was not typed", p.stdout)
        self.assertEqual(self.query("select count(*) from orders"), "120")

    def test_the_import_passes_check_and_shows_the_same_plan(self):
        lua = self.path("orders.lua")
        p = self.run_rb("import", self.doc, "-o", lua)
        self.assertExit(p, 0)
        self.assertExit(self.run_rb("check", lua), 0)
        steps = lambda out: [l.split("(id")[0].split("]", 1)[1].strip() for l in out.splitlines()
                             if l.strip()[:1].isdigit()]
        md = self.run_rb("show", self.doc)
        self.assertEqual(steps(self.run_rb("show", lua).stdout), steps(md.stdout))
        self.assertEqual(steps(md.stdout), ["Investigate", "Fix the totals", "Drop the test orders"])
        p = self.run_book(lua, "--target", "stage", "--answers", self.answers)
        self.assertExit(p, 0)
        self.assertEqual(self.query("select count(*) from orders"), "100")

    def test_a_wiki_pages_block_is_one_transaction_and_its_quotes_are_the_shells(self):
        """What a Confluence page does to a checklist: typographic quotes and
        HTML entities in the commands, a BEGIN/COMMIT block with a delete;
        the block is confirmed once (the target's name typed once) and runs
        as one transaction, the quotes are the shell's again, a value goes
        inside the double quotes it stands in, and a dry run with --yes
        reaches the end without asking for the name."""
        doc = self.write("wiki.md", "# Clean up\n\n## Look\n\n"
                         "- Rows: `psql \u201c$DATABASE_URL\u201d -Atc \u201cselect \u2018n=\u2019 || count(*) from orders\u201d`\n"
                         "- Echo: `echo \"id <ID> here\" &amp;&amp; echo done`\n\n"
                         "## Delete\n\n```sql\nBEGIN;\nDELETE FROM orders WHERE id > <ID>;\n"
                         "SELECT count(*) AS left FROM orders;\nCOMMIT;\n```\n")
        q = ("[*] Destructive SQL: DELETE FROM orders WHERE id > '110'; SELECT count(*) AS left FROM orders "
             "-- type stage to run it = stage\n")
        answers = self.write("w.txt", q)
        p = self.run_book(doc, "--target", "stage", "--dry-run", "--yes", "-p", "id=110")
        self.assertExit(p, 0)
        self.assertIn("would ask for the target's name typed", p.stdout)
        self.assertIn("| n=120", p.stdout)                 # the curly-quoted psql line, as typed
        self.assertIn("| id 110 here", p.stdout)
        self.assertIn("| done", p.stdout)                  # &amp;&amp; is &&
        self.assertEqual(self.query("select count(*) from orders"), "120")
        p = self.run_book(doc, "--target", "stage", "--answers", answers, "-p", "id=110",
                          transcript=self.path("w.jsonl"))
        self.assertExit(p, 0)
        self.assertEqual(p.stdout.count("type stage to run it"), 1, p.stdout)
        self.assertIn("left=110", p.stdout)
        self.assertNotIn("no transaction in progress", p.stdout + p.stderr)
        self.assertEqual(self.query("select count(*) from orders"), "110")


if __name__ == "__main__":
    unittest.main()
