-- runbook.help: the documented usage of every primitive, in one place.
--
-- `help()` and `help(http.get)` in `runbook repl` print from here, and the
-- parts of docs/authoring.md between `<!-- help:ID begin -->` and
-- `<!-- help:ID end -->` are written from here by scripts/gen-docs.lua
-- (`cmake --build build --target docs`); the test unit/help_docs.lua fails
-- when the two differ, so the page and the prompt cannot drift.  Plain
-- Lua with no host module, so the stock lua5.4 runs the generator.
--
-- A section is one "###" of the page: its title, its body (markdown, as
-- the page shows it) and its entries, one a call: the usage and a short
-- summary.  An entry's name is the start of its usage (`http.get`,
-- `db:query`, `dry_run`); the REPL completes unloaded primitives' names
-- from these too.
local help = {}

help.INTRO = [==[
Every primitive waits through the one event loop: it has a timeout, Ctrl-C
interrupts it, and `parallel` runs many at once from one thread. A failing
primitive raises an error that says what failed, where, and what to check,
prefixed with your file:line; the step then fails and the operator decides.
To branch on a failure yourself, use `pcall` (in a runbook, `pcall` and
`xpcall` let Ctrl-C through: the operator's interrupt always stops the step):

```lua
local ok, err = pcall(http.get, target.health[1], { timeout = 3 })
if not ok then log.warn("health check failed: %s", err) end
```
]==]

-- The questions of "What the operator sees and answers".
help.QUESTIONS =
  { id = "questions", title = "Questions", entries = {
      { "confirm(q)",
        "yes continues; no *declines* the step (the operator then skips or aborts)" },
      { "yesno(q)",
        "returns true or false" },
      { "choose(q, list, {default})",
        "returns one element of `list` (by number or by value)" },
      { "prompt(q, {secret, default, pattern, allow_empty})",
        "returns the text typed; `secret` input is not echoed and is redacted everywhere; `pattern` is a Lua pattern the whole answer must match" },
      { "manual(instruction)",
        "a checklist item done by hand: Enter marks it done, `n` declines the step" },
      { "approve(q, {from, timeout})",
        "a second person's approval: returns `{by, text, at, ...}`; a rejection *declines* the step as `confirm` does; no answer within `timeout` (seconds, default 1800) fails it (kind `timeout`)" },
    },
    body = [==[
```lua
local replica = choose("Restore from which replica?", { "db-2", "db-3" })
local ticket = prompt("Incident ticket", { pattern = "INC%-%d+" })
manual("Put the status page into maintenance mode")
```
]==] }

-- The sections of "## Primitives", in the order of the page.
help.SECTIONS = {
  { id = "errors", title = "Errors: `err.kind`",
    entries = {
    },
    body = [==[
What a primitive raises is an object: `tostring(err)` (and `"..." .. err`,
`%s`) is the text above, and its fields say what it is, so a runbook
branches on the kind of failure, not on the wording:

| field | holds |
| --- | --- |
| `message` | the text without the position |
| `where` | `file:line` of your code that made the call (nil when a primitive is handed to `pcall` itself, as in the example above) |
| `primitive` | `"exec"`, `"sql.query"`, `"redis.call"`, `"http"`, `"ssh"`, `"lock"`, ... |
| `kind` | one of the list below |

| kind | the failure |
| --- | --- |
| `usage` | the call itself is wrong (an argument, an option, outside a step) |
| `timeout` | a wait ran past its timeout, or past the step's |
| `interrupted` | Ctrl-C or a terminating signal (pcall raises it on in any case) |
| `declined` | the operator answered no to `confirm` or `manual`, or an approver rejected `approve` |
| `refused` | connection refused: nothing listens there |
| `resolve` | the host name did not resolve |
| `auth` | the login was refused (password, key, user, pg_hba.conf) |
| `tls` | the peer was not trusted (TLS certificate, SSH host key), or TLS failed |
| `lost` | the connection was lost or closed during the call |
| `server` | the server answered with an error: SQL (`err.sqlstate`), a Redis error reply, an HTTP status not in `expect` (`err.status`) |
| `busy` | someone else holds it: a `lock` of another run (`err.holder`), no free connection slot |
| `failed` | a command ran and exited non-zero (`err.code`, `err.signal`), a `verify` said no |
| `untried` | a fan-out's item that never ran: more than `max_errors` had failed before its turn |
| `error` | anything else |

```lua
local ok, err = pcall(function() return redis.connect(target.redis):ping() end)
if not ok and err.kind == "refused" then
  exec { "systemctl", "start", "redis-server" }
elseif not ok then
  error(err)          -- anything else stops the step as it was
end
```

`parallel` and `ssh.exec` raise one error for all their failed branches:
its kind is theirs when they all failed alike (else `error`), and
`err.errors` (parallel) or `err.results` (ssh.exec) holds each one.

Every call is recorded in the transcript as a `call` event with its
arguments (redacted), outcome and duration, and `mutating = true` when it
is one a dry run simulates (what `runbook stats` counts as a change:
docs/stats.md).
]==] },
  { id = "exec", title = "Local processes: `exec{argv..., timeout, stdin, env, cwd, check, readonly, quiet, secret}`, `sh(cmd, opts)`",
    entries = {
      { "exec{argv..., timeout, stdin, env, cwd, check, readonly, quiet, secret} -> r",
        "runs argv (no shell): r = {code, ok, stdout, stderr, duration}" },
      { "sh(cmd, opts) -> r",
        "runs a shell command line, as exec" },
    },
    body = [==[
`exec` runs argv directly, never through a shell, in a process group of its
own; `sh` runs a shell command line. Both return `{code, ok, stdout,
stderr, duration}` and raise on a non-zero exit unless `check = false`. The
timeout (default 60 s) terminates the whole group. Output is shown as it
arrives unless `quiet = true`. `env` (a table of names and values) is added
to the environment; the record lists its names, never its values.
`secret = true`: the output is a secret (see [Secrets](#secrets)).

What a command prints is handled in linear time however it is cut into
lines, and the event loop keeps running while it arrives, so a step's
`timeout` and Ctrl-C work during endless output (minified JSON from `curl`
or `kubectl` is one long line). On screen a line longer than 64 KiB is
shown cut: its first 64 KiB, then `[line cut at 65536 bytes: N more not
shown]`; `stdout` keeps the whole line. In memory exec keeps at most
**32 MiB of each stream** (`stdout` and `stderr`): past that it reads on,
counts what it drops and keeps nothing more, so `yes` under a timeout
cannot eat memory. A cut result carries `truncated = true`,
`stdout_dropped` and `stderr_dropped` (bytes not kept), the operator sees
a warning, and the `call` event records the same fields. Read a bigger
output into a file (`sh("cmd > /tmp/out")`) and process that.

ANSI escape sequences (colours, cursor moves, OSC titles and links; pm2
and others print them even into a pipe) are removed from `stdout` and
`stderr` and from the output shown, so patterns, error messages, notify
and the report see plain text. The same holds for `ssh` `s:exec`.

```lua
local r = exec { "systemctl", "is-active", "nginx", check = false, readonly = true }
if r.code ~= 0 then sh("journalctl -u nginx -n 50 --no-pager", { readonly = true }) end
exec { "pg_restore", "-d", p.db, p.dump, timeout = 3600 }
```
]==] },
  { id = "time", title = "Time: `wait(seconds)`, `poll(fn, {every, timeout, what})`, `time.now/clock/date`",
    entries = {
      { "wait(seconds)",
        "pauses; Ctrl-C interrupts it" },
      { "poll(fn, {every, timeout, what}) -> value",
        "calls fn until it returns a true value" },
      { "time.now() -> seconds",
        "the wall clock, seconds since the epoch" },
      { "time.clock() -> seconds",
        "a monotonic clock, for durations" },
      { "time.date(fmt, t) -> text",
        "formats t (default now) as os.date does" },
    },
    body = [==[
`poll` calls `fn` until it returns a true value (returned), every `every`
seconds (5), failing after `timeout` (300) with a message naming `what`.
`time.now()` is the wall clock in seconds since the epoch (as `os.time()`),
`time.clock()` a monotonic clock in seconds with sub-millisecond
resolution, for measuring how long something took (it never jumps when
the wall clock is set), `time.date(fmt, t)` formats `t` (default: now) as
`os.date` does, by default `!%Y-%m-%d %H:%M:%S UTC`. Reading the time
changes nothing: it is neither simulated nor recorded (every transcript
line carries its own `ts`).

```lua
local t0 = time.clock()
http.get(url)
log.info("answered in %.0f ms", (time.clock() - t0) * 1000)
```

```lua
poll(function() return http.get(url, { expect = false }).status == 200 end,
     { every = 2, timeout = 120, what = "the API answering 200" })
```
]==] },
  { id = "parallel", title = "Fan-out: `parallel(items, fn, {limit, check, max_errors})`",
    entries = {
      { "parallel(items, fn, {limit, check, max_errors}) -> results",
        "fn(item, i) for every item at once, results in order" },
    },
    body = [==[
Runs `fn(item, i)` for every item concurrently (at most `limit`, default
64, at a time) and returns the results in order. When any fails it raises
with the failures listed, unless `check = false`, when it returns
`results, errors`. `max_errors = N` (or `"10%"` of the items) is an error
budget, as AWS SSM's rate control: once more than that have failed, no
new item starts; those left get an error of kind `untried`, and the
message says how many were not tried. `ssh.exec(hosts, cmd, {max_errors
= ...})` takes the same budget (a host whose command failed spends it).

A fan-out a step calls itself is recorded as a `fanout` event with its
failed and untried items (by index and name). `runbook run NAME
--retry-failed TRANSCRIPT` runs the runbook again on those only: the steps
before the first with items to retry are skipped as done (as with
`--resume`: params, target and `state` come from that run), each such
step's fan-outs run only their failed and untried items, and the steps
after run as usual. An item that ended ok is not run: `parallel` leaves
its result `nil`, `ssh.exec` gives `{ host = ..., ok = true, skipped =
true }`; so code after a fan-out should read the results it needs from
`state` or check `r.skipped`, not count on every result. The list must be
the same as in the run retried (its count, and the names of the items
that failed): a changed list is an error, not a guess. A fan-out inside
another's branch is not recorded and runs whole.

```lua
local codes = parallel(target.hosts, function(h)
  return ssh.connect { host = h }:exec("systemctl is-active api", { readonly = true, check = false }).code
end)
```
]==] },
  { id = "file", title = "Files: `file.read(path, {secret})`, `file.write(path, text, {append, mode})`, `file.list(dir)`, `file.stat(path)`, `file.remove(path)`",
    entries = {
      { "file.read(path, {secret}) -> text",
        "the whole file" },
      { "file.write(path, text, {append, mode}) -> {bytes, path}",
        "replaces (or appends to) the file; simulated in a dry run" },
      { "file.list(dir) -> names",
        "the names in a directory, sorted" },
      { "file.stat(path) -> {type, size, mode, mtime}",
        "or nil when nothing is there" },
      { "file.remove(path)",
        "removes a file or an empty directory; simulated in a dry run" },
    },
    body = [==[
`file.read` returns the whole file; `file.list` the names in a directory,
sorted, without `.` and `..`; `file.stat` `{type = "file"|"dir"|"other",
size, mode, mtime}`, or nil when nothing is there. `file.write` replaces
the file (`append = true` adds to it; `mode = tonumber("600", 8)` sets its
permission bits) and returns `{bytes, path}`; `file.remove` removes a file
or an empty directory. Each is a recorded call (`file.read`, `file.write`,
...) with the path and the size, never what the file holds: a file read
during an incident is often a config with a credential in it (read one
with `secret = true` and its text is marked, see Secrets). In a dry run
`file.write` and `file.remove` are simulated (`would run: write 12 bytes
to /etc/app/flag`, stand-in `{bytes, path, dry_run = true}`) and the
others run; a `--scenario` rule with `primitive = "file.read"` and
`result = { text = "..." }` replaces what a read returns. A failure says
which file and why: `file.read /etc/app.conf: No such file or directory`.

```lua
local conf = file.read("/etc/app/app.conf")
if not conf:find("maintenance = on", 1, true) then
  file.write("/etc/app/app.conf", conf .. "\nmaintenance = on\n")
end
```
]==] },
  { id = "http", title = "HTTP: `http.get/post/request(url, opts)`",
    entries = {
      { "http.get(url, opts) -> r",
        "GET: r = {status, headers, body, time, url, tls}" },
      { "http.post(url, opts) -> r",
        "POST (opts.body or opts.json)" },
      { "http.request(method, url, opts) -> r",
        "any method" },
      { "r:json() -> value",
        "the response body decoded" },
    },
    body = [==[
Options: `headers`, `body`, `json` (a table, sent as JSON), `timeout` (30),
`expect` (a status or a list; a mismatch raises with the status and an
excerpt of the body; `false` accepts any), `cacert`, `insecure = true` (an
explicit, recorded opt-out of TLS verification), `follow`, `max_redirects`
(5), `fresh = true` (a connection of its own, not kept: a TLS check after a
reload sees the certificate served now), `readonly`, `secret = true` (the
body, and every value `r:json()` decodes from it, is a secret). The result: `{status, headers, body, time, url, tls =
{subject, issuer, expires, expires_in_days}}` and `r:json()`. Connections to
the same host are reused.

```lua
local r = http.get(target.detailed_health, { expect = 200, timeout = 5 })
log.info("db pool in use: %d", r:json().db.pool.in_use)
http.post(url, { json = { reason = "incident" }, expect = { 200, 202 } })
```
]==] },
  { id = "sql", title = "PostgreSQL: `sql.connect(url, opts)` -> `db`",
    entries = {
      { "sql.connect(url, opts) -> db",
        "a PostgreSQL connection (one kept per URL for the run)" },
      { "db:query(sql, ...) -> rows",
        "rows keyed by column name; $1..$n parameters" },
      { "db:each(sql, ..., fn) -> n",
        "fn(row) for every row as it arrives" },
      { "db:exec(sql, ...) -> n, tag",
        "a write: the affected rows and the command tag" },
      { "db:tx(fn) -> fn's results",
        "BEGIN; fn(db); COMMIT, or ROLLBACK and re-raise" },
      { "db:close()",
        "closes the connection" },
    },
    body = [==[
`db:query(sql, ...)` returns an array of rows keyed by column name (integers,
numbers, booleans, NULL as nil, the rest text); `db:exec(sql, ...)` returns
the affected rows; `db:tx(fn)` commits, or rolls back and re-raises.
Parameters are always `$1..$n`, sent bound, never spliced into the text.
Options: `timeout` (30 s per statement, cancelled on the server),
`connect_timeout` (5), `statement_timeout`. One connection per URL is kept
for the whole run. The table form `db:query{sql, params..., secret = true}`
(also `db:exec{...}`) reads a secret: every string and number cell is one.

A query's result is capped: `db:query` keeps at most **100,000 rows** and
**64 MiB** of values (their text size); past either, the rest of the rows
are read and counted but not kept, the rows table carries `truncated =
true` and `total` (the statement's row count), and a warning naming both
is shown and recorded as a `log` event (the `call` event records
`truncated` and `rows_total`). A trailing table of options after the
parameters changes the caps for one call: `db:query(sql, a, b, { max_rows
= 500000, max_bytes = 256 * 1024 * 1024 })`.

To go through more rows than that, stream them: `db:each(sql, ..., fn)`
calls `fn(row)` for every row as it arrives, reading 1,000 at a time, so
memory stays flat however many rows there are (2 million rows: 13 MB peak
for the whole process, against 518 MB held by a plain query before the
cap). `fn` returning `false` stops early (the rest is read and dropped, so
the connection is ready for the next call); an error in `fn` does the same,
then propagates. It returns the number of rows `fn` saw. The `timeout`
applies to each wait for the next rows. In a dry run it runs inside the
same READ ONLY transaction as `db:query`.

```lua
local db = sql.connect(p.db)
local n = db:query("select count(*) as n from users where created > $1", since)[1].n
db:tx(function(tx) tx:exec("update jobs set state = 'failed' where id = $1", id) end)
local stuck = 0
db:each("select id, state from jobs where updated < now() - interval '1 hour'", function(job)
  if job.state == "running" then stuck = stuck + 1 end
end)
```
]==] },
  { id = "redis", title = "Redis: `redis.connect(url)` -> `r`",
    entries = {
      { "redis.connect(url) -> r",
        "a Redis connection" },
      { "r:call(cmd, ...) -> reply",
        "one command; an error reply raises" },
      { "r:ping()",
        "PING" },
      { "r:close()",
        "closes the connection" },
    },
    body = [==[
`redis://[[user]:password@]host[:port][/db]`. `r:call(cmd, ...)` maps every
reply to Lua (status and bulk strings as strings, integers, nil; nil inside
an array becomes false); an error reply raises with the server's text.
`r:ping()`. `r:call{ "BLPOP", "q", 30, timeout = 40 }` for a blocking
command longer than the 10 s default; `r:call{ "GET", "vault:db", secret =
true }` reads a secret (every string and number of the reply).
]==] },
  { id = "ssh", title = "SSH: `ssh.connect{host, port, user, key, passphrase, known_hosts, agent, accept_new}` -> `s`",
    entries = {
      { "ssh.connect{host, port, user, key, passphrase, known_hosts, agent, accept_new} -> s",
        "an SSH session; unknown or changed host keys are refused" },
      { "s:exec(cmd, {timeout, stdin, readonly, check, quiet, secret}) -> r",
        "runs cmd on the host: r = {code, ok, stdout, stderr}" },
      { "s:close()",
        "closes the session" },
      { "ssh.exec(hosts, cmd, opts) -> results",
        "cmd on every host at once, one result per host" },
    },
    body = [==[
`s:exec(cmd, {timeout, stdin, readonly, check, quiet, secret})` returns `{code, ok,
stdout, stderr}`; `secret = true` as for `exec` (also for `ssh.exec`). Host keys are checked against `known_hosts`: an unknown or
changed key is refused with its fingerprint; `accept_new = true` is the
explicit way to trust a new host, and only a host with no entry at all: a
host with any key on file is offered only the key types on file and must
present one of them (a host on file with RSA that now shows ED25519 is
refused, never appended), and a key on an `@revoked` line is refused. `ssh.exec(hosts, cmd, opts)` runs on every
host at once and returns one result per host.

```lua
local results = ssh.exec({ "web1", "web2", "deploy@web3:2222" }, "uptime", { readonly = true })
```
]==] },
  { id = "notify", title = "Notify: `notify(text, {channel, severity, required})`",
    entries = {
      { "notify(text, {channel, severity, required})",
        "posts to the config's channels" },
    },
    body = [==[
Posts to the config's channels (a Slack-compatible webhook, or a command
that gets the text on stdin). Each channel's answer is recorded; a failing
channel is a warning unless `required = true`.
]==] },
  { id = "severity", title = "Severity: `severity{level, action, previous, reasons}`",
    entries = {
      { "severity{level, action, previous, reasons}",
        "records the incident's severity" },
    },
    body = [==[
Records the incident's severity as a `severity` event: `action` is
`proposed` (the runbook's checks call for it), `confirmed` or `changed`
(the operator accepted the proposal or picked another; recorded as
user@host), `declared` (the runbook's own finding, an expired certificate)
or `raised` (a failure made it worse, with `previous`). `post-incident` and
`runbook report` read these events, never log wording: the ticket's
severity is the most severe level confirmed, changed, declared or raised
in any run. Use it through `require("incident")`: `incident.confirm`
records the proposal and the answer, `incident.declare("P1", why)` a
declaration, `incident.declare(level, why, { previous = "P2" })` a raise.
]==] },
  { id = "updates", title = "Status updates, escalation and the incident's messages",
    entries = {
    },
    body = [==[
A run has a severity when its header says so (`severity = "P1"`) or once a
`severity` event declares one (`incident.confirm`, `incident.declare`; a
later raise changes it; a proposal alone does not). While it goes on, the
run keeps the incident's promises, with nothing to write in the runbook:

* **Updates on the cadence.** An update is due every `cadence[level]`
  after the last one (or the start of the run): P0 15m, P1 30m, P2 4h, P3
  never, unless the config says otherwise. At the next step boundary the
  operator sees the update template filled from the transcript (status,
  the steps finished and commands run since the last update, the next
  step) and answers `Status update due: send (Enter), edit, or snooze
  [DURATION]?`: `edit` asks `Status update text` (Enter keeps it as
  shown), `snooze` puts it off for 5 minutes (or the cadence, if shorter),
  `snooze 10m` for as long as said. During a long step the line `update
  due (...): offered when this step ends` appears when the time comes: the
  keyboard is the step's, which may be asking something itself. A run with
  nobody at the keyboard (`--yes`, or stdin not a terminal) does not wait
  for the step's end: the update goes out when due, as the answers file
  says (`[*] Status update due = send | edit | snooze 10m`, then `[*]
  Status update text = ...`), or as it is when it says nothing: the people
  waiting for an update are owed it whether or not someone watches the
  run. Sending goes through `notify` and records an `update` event
  (`source = "operator"`, `sent` = whether a channel took it); each reminder records a `reminder` event (`due
  = "P1 update"`, `action` sent, edited, snoozed, or shown for the line
  during a step). A dry run shows `would send the update` and notify sends
  nothing.
* **Escalation.** A question that waits for the operator longer than
  `respond[level]` (P0 15m, P1 15m, P2 1h, P3 never) notifies the
  `escalation` channel of the config (else every channel) once per wait,
  says so in one line under the question and asks it again, what was
  typed kept; recorded as an `escalation` event (`waited`, `on =
  "operator"`, `channel`). Each wait on the terminal is a `waiting` event
  first. An approval waits the same way: stdlib code that waits on a
  person calls `require("runbook.escalation").tick(run, "approval",
  started_at, { question = q })` now and then; it escalates once per
  `started_at` and returns the seconds until it would, or nil.
* **Messages.** With `announce = true` in the config the run also sends an
  initial alert when its severity is declared (the header's at the start,
  a declaration or a raise when it comes) and a resolution when such a run
  ends done; without it, the runbook announces itself (`incident.announce`)
  as before.

The four messages (`alert`, `update`, `resolved`, `escalation`) are
templates with `[Placeholder]` fields: `[Service Name]`, `[Severity]`,
`[Status]`, `[Since Last Update]`, `[Next Step]`, `[Duration]`, `[Lead]`,
`[Runbook]`, `[Target]`, `[Started]`, `[Cadence]`, `[Summary]`, `[Run]`,
and for an escalation `[Waited]`, `[Waiting On]`, `[Respond]`,
`[Question]`, `[Step]`. A team replaces them in the config, a runbook in
its header (the runbook's wins); a field the run has no value for stays
in the text as written, so nothing is lost silently:

```lua
-- config.lua
cadence = { P0 = "15m", P1 = "30m", P2 = "4h" }     -- or seconds: P1 = 90
respond = { P0 = "15m", P1 = "15m", P2 = "1h" }
escalation = "pager"                                -- a channel of `notify`
announce = true
templates = { update = "[Service Name] ([Severity]): [Status]. Done: [Since Last Update]. Next: [Next Step]." }

-- a runbook
runbook { name = "db-restore", severity = "P0",
  templates = { resolved = "[Service Name] restored after [Duration]; lead [Lead]." } }
```

`require("runbook.templates").fill(text, values)` is the filling itself
(stdlib code): it returns the text and the names it had no value for. A
name matches ignoring case, blanks, `_` and `-`; `[x]`, `[ ]` and a
markdown link's `[text](url)` are no placeholders.
]==] },
  { id = "lock", title = "Team lock: `lock(name, opts)`",
    entries = {
      { "lock(name, opts) -> l",
        "a team-wide lock, held until the run ends" },
      { "lock.holder(name, opts) -> who",
        "who holds the lock, or nil" },
      { "lock.held(name) -> l",
        "the handle when this run holds it" },
      { "l:release()",
        "releases it before the run ends" },
    },
    body = [==[
Takes a lock every operator of the team sees (PostgreSQL advisory lock or
Redis, from the config's `lock` table), held until the run ends (also on
abort, Ctrl-C, SIGTERM and SIGHUP; only a SIGKILLed run leaves a Redis lock
until its TTL). A second run that wants it is refused with who holds
it, on which host, since when.
]==] },
  { id = "helpers", title = "Helpers",
    entries = {
      { "log.info(fmt, ...)",
        "a line shown and recorded (also log.warn, log.error)" },
      { "log.warn(fmt, ...)",
        "a warning, shown and recorded" },
      { "log.error(fmt, ...)",
        "an error line, shown and recorded" },
      { "print(...)",
        "shown and recorded" },
      { "json.encode(value) -> text",
        "JSON text" },
      { "json.decode(text) -> value",
        "JSON integers as integers, null as json.null" },
      { "env(name, default) -> value",
        "an environment variable, marked secret" },
      { "secret(value) -> value",
        "from now on shown and recorded as ***" },
      { "require(name) -> module",
        "a stdlib module or one beside the runbook" },
      { "dry_run",
        "true in a rehearsal" },
      { "state",
        "what the steps share" },
      { "target",
        "the --target table of the config file" },
    },
    body = [==[
`log.info/warn/error(fmt, ...)` (shown and recorded), `print(...)`,
`dry_run` (true in a rehearsal: mutating calls are simulated), `state` (what
the steps share, see above), `json.encode/decode`, `env(name, default)` (the value is
marked secret, as in the config file), `secret(value)` (from now on
`value` is shown and recorded as `***`; values under 4 characters are not
hunted as substrings), `target` (the `--target` table of the config file,
see [targets.md](targets.md)), `require("health")` and the other stdlib
modules, or your own modules beside the runbook (`runbooks/lib/team.lua` is
`require("lib.team")`, run in your runbook's environment); both call the
same verbs, with the same dry run and transcript, one copy per run.
]==] },
}

-- A long string ends with the newline before its closing bracket.
help.INTRO = help.INTRO:gsub("\n+$", "")
for _, sec in ipairs({ help.QUESTIONS, table.unpack(help.SECTIONS) }) do sec.body = sec.body:gsub("\n+$", "") end

-- The name an entry is known by: the start of its usage.
function help.name(entry)
  return entry[1]:match("^[%w_.:]+")
end

-- Every entry with its section, questions first, in page order.
function help.entries()
  local list = {}
  for _, sec in ipairs({ help.QUESTIONS, table.unpack(help.SECTIONS) }) do
    for _, e in ipairs(sec.entries) do list[#list + 1] = { name = help.name(e), entry = e, section = sec } end
  end
  return list
end

local function table_rows(entries, out)
  out[#out + 1] = "| call | does |"
  out[#out + 1] = "| --- | --- |"
  for _, e in ipairs(entries) do out[#out + 1] = "| `" .. e[1] .. "` | " .. e[2] .. " |" end
end

-- The text of a section as the page shows it: its heading and its body.
function help.section_text(sec)
  return "### " .. sec.title .. "\n" .. sec.body
end

local BLOCKS = {}

function BLOCKS.questions()
  local out = {}
  table_rows(help.QUESTIONS.entries, out)
  out[#out + 1] = ""
  out[#out + 1] = help.QUESTIONS.body
  return table.concat(out, "\n")
end

function BLOCKS.primitives()
  local out = { "## Primitives", "", help.INTRO, "",
    "Every call at a glance (`help()` in `runbook repl` prints this list, `help(http.get)` " ..
    "the section of a call):", "" }
  local all = {}
  for _, sec in ipairs(help.SECTIONS) do
    for _, e in ipairs(sec.entries) do all[#all + 1] = e end
  end
  table_rows(all, out)
  for _, sec in ipairs(help.SECTIONS) do
    out[#out + 1] = ""
    out[#out + 1] = help.section_text(sec)
  end
  return table.concat(out, "\n")
end

-- The markdown of one generated block of docs/authoring.md.
function help.markdown(id)
  return BLOCKS[id]()
end

help.BLOCK_IDS = { "questions", "primitives" }

-- `help()`: every call, a line each, by section.
function help.index()
  local out = { "Every call (help(name) or help(value) for its section, e.g. help(http.get), help(\"db:query\")):" }
  for _, sec in ipairs({ help.QUESTIONS, table.unpack(help.SECTIONS) }) do
    if #sec.entries > 0 then
      out[#out + 1] = ""
      out[#out + 1] = sec.title:gsub("`", "")
      for _, e in ipairs(sec.entries) do out[#out + 1] = "  " .. e[1] .. "\n      " .. e[2] end
    end
  end
  return table.concat(out, "\n")
end

-- `help(name)`: the usage lines of the entries called name (or of the
-- section with that id, or of every entry under name., as for "sql"),
-- then the text of their sections.  nil when nothing is documented so.
function help.text(name)
  local lines, secs, seen = {}, {}, {}
  for _, it in ipairs(help.entries()) do
    local hit = it.name == name or it.section.id == name
      or it.name:sub(1, #name + 1) == name .. "." or it.name:sub(1, #name + 1) == name .. ":"
    if hit then
      lines[#lines + 1] = it.entry[1] .. "\n    " .. it.entry[2]
      if not seen[it.section] then
        seen[it.section] = true
        secs[#secs + 1] = it.section
      end
    end
  end
  if #secs == 0 then
    for _, sec in ipairs(help.SECTIONS) do
      if sec.id == name then secs[1] = sec end
    end
  end
  if #secs == 0 then return nil end
  for _, sec in ipairs(secs) do
    lines[#lines + 1] = ""
    lines[#lines + 1] = sec == help.QUESTIONS and BLOCKS.questions() or help.section_text(sec)
  end
  return table.concat(lines, "\n")
end

return help
