/*
 * lib_sql.c: PostgreSQL through libpq, on the event loop.
 *
 *   sql.connect(conninfo, connect_timeout) -> conn | nil, failure
 *   conn:query(sql, params, timeout, mode, max_rows, max_bytes)
 *                                           -> result... | nil, failure
 *   conn:fetch(n, timeout, discard) -> rows, finished, status, notices
 *                                           (after mode "stream")
 *   conn:wait(timeout) -> channel, payload, pid | nil, why   (LISTEN's)
 *   sql.parse(conninfo) -> options | nil, message
 *
 * connect starts a non-blocking connection (PQconnectStartParams) and drives
 * PQconnectPoll as the socket becomes ready; query sends one statement with
 * PQsendQueryParams (parameters always bound, in text format, never spliced
 * into the SQL), flushes, and reads the reply with PQconsumeInput/PQisBusy.
 * Every wait goes through rb_loop_wait, so a deadline, the step's limit and
 * Ctrl-C end it the same way.  A timed-out or interrupted statement is
 * cancelled on the server (PQcancel) and its reply drained, so the
 * connection stays usable; when that fails the connection is closed.
 *
 * Rows arrive in single-row mode (PQsetSingleRowMode) and go straight into
 * Lua tables, so libpq never holds a whole result: "rows" keeps up to
 * max_rows rows and max_bytes bytes of values and only counts the rest
 * (the 4th result says how many there were); "stream" returns at once and
 * each conn:fetch(n) hands back the next n rows, reading no further until
 * asked, so memory stays flat however many rows the statement makes.
 *
 * Failures a runbook should see (refused, timed out, a server error...) are
 * returned as nil and a table of facts, and stdlib/runbook/prim/sql.lua words
 * them: what to tell the operator is policy.  Misuse raises at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <libpq-fe.h>

#include "runbook/host.h"
#include "runbook/loop.h"

#define CONN_MT "runbook.sql.conn"
#define DRAIN_SECONDS 2.0       /* how long a cancelled statement may take to stop */
#define MAX_NOTICES 16          /* notices kept per call; the rest are counted */

/* Type OIDs from PostgreSQL's catalog/pg_type.dat: fixed since 7.x and part
 * of the wire protocol, so libpq clients hard-code them. */
enum {
    BOOLOID = 16, INT8OID = 20, INT2OID = 21, INT4OID = 23, OIDOID = 26,
    FLOAT4OID = 700, FLOAT8OID = 701, NUMERICOID = 1700
};

enum mode { M_ROWS, M_EXEC, M_SIMPLE, M_STREAM, M_FETCH };

struct conn {
    PGconn *pg;             /* NULL once closed */
    PGresult *res;          /* the last result of the call in flight (owned) */
    PGresult *err;          /* its first error (owned) */
    enum mode mode;
    int busy;               /* a call (or an open stream) holds this connection */
    int streaming;          /* a stream is open between fetches */
    int rows_slot;          /* stack slot of the table rows go to; 0: count only */
    int pause;              /* a fetch: stop reading once max_rows are kept */
    int full;               /* a cap was reached: the rest is only counted */
    lua_Integer max_rows, max_bytes, kept, bytes, total;
    double started, deadline, timeout;
    char *notices[MAX_NOTICES];
    int nnotices, dropped;
    char who[160];          /* "127.0.0.1:5432/app", for messages */
};

/* Stack slots: connect(conninfo, connect_timeout) then the new conn;
 * query(conn, sql, params, timeout, mode) then the parameter strings. */
enum { C_INFO = 1, C_TIMEOUT, C_CONN };
enum { Q_CONN = 1, Q_SQL, Q_PARAMS, Q_TIMEOUT, Q_MODE, Q_VALUES, Q_STRINGS, Q_ROWS };
enum { F_CONN = 1, F_N, F_TIMEOUT, F_DISCARD, F_ROWS };

static void clear_results(struct conn *c)
{
    PQclear(c->res);
    PQclear(c->err);
    c->res = c->err = NULL;
}

static void clear_notices(struct conn *c)
{
    for (int i = 0; i < c->nnotices; i++)
        free(c->notices[i]);
    c->nnotices = c->dropped = 0;
}

/* Shared by __gc, __close and conn:close; clears the pointer first so a
 * second close (or a close during a wait) finds nothing to free. */
/* The call on c is over (or broke): the connection is free again. */
static void call_over(struct conn *c)
{
    c->busy = 0;
    c->streaming = 0;
    c->pause = 0;
    c->rows_slot = 0;
}

static void conn_close(struct conn *c)
{
    PGconn *pg = c->pg;
    c->pg = NULL;
    clear_results(c);
    clear_notices(c);
    if (pg != NULL)
        PQfinish(pg);
}

static int conn_gc(lua_State *L)
{
    conn_close(luaL_checkudata(L, 1, CONN_MT));
    return 0;
}

/* libpq's default prints notices (RAISE NOTICE, "there is no transaction in
 * progress") on stderr, over the operator's screen; keep them for the
 * caller instead, who shows and records them. */
static void on_notice(void *arg, const PGresult *r)
{
    struct conn *c = arg;
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY);
    if (msg == NULL || c->nnotices >= MAX_NOTICES) {
        c->dropped++;
        return;
    }
    size_t n = strlen(msg) + (sev ? strlen(sev) : 6) + 3;
    char *s = malloc(n);
    if (s == NULL) {
        c->dropped++;
        return;
    }
    snprintf(s, n, "%s: %s", sev ? sev : "NOTICE", msg);
    c->notices[c->nnotices++] = s;
}

static void set_who(struct conn *c)
{
    const char *host = PQhost(c->pg), *port = PQport(c->pg), *db = PQdb(c->pg);
    snprintf(c->who, sizeof c->who, "%s:%s/%s", host && *host ? host : "localhost",
             port && *port ? port : "5432", db ? db : "");
}

static void set_field(lua_State *L, const char *key, const char *value)
{
    if (value != NULL && *value != '\0') {
        lua_pushstring(L, value);
        lua_setfield(L, -2, key);
    }
}

static const char *wake_name(enum rb_wake w)
{
    switch (w) {
    case RB_WAKE_TIMEOUT: return "timeout";
    case RB_WAKE_INTERRUPT: return "interrupt";
    case RB_WAKE_CANCEL: return "cancel";
    default: return NULL;
    }
}

/* ---- connecting ------------------------------------------------------- */

/* nil, {message, host, port, db, user, who, elapsed, wake}; closes c. */
static int connect_failed(lua_State *L, struct conn *c, enum rb_wake w)
{
    lua_pushnil(L);
    lua_createtable(L, 0, 8);
    set_field(L, "message", PQerrorMessage(c->pg));
    set_field(L, "host", PQhost(c->pg));
    set_field(L, "port", PQport(c->pg));
    set_field(L, "db", PQdb(c->pg));
    set_field(L, "user", PQuser(c->pg));
    set_who(c);
    set_field(L, "who", c->who);
    set_field(L, "wake", wake_name(w));
    lua_pushnumber(L, rb_loop_now() - c->started);
    lua_setfield(L, -2, "elapsed");
    conn_close(c);
    return 2;
}

static int k_connect(lua_State *L, int status, lua_KContext ctx);

/* One turn of libpq's connection state machine; the socket may change
 * between turns (another address of the host, a retry without TLS). */
static int connect_step(lua_State *L, struct conn *c, PostgresPollingStatusType st)
{
    if (st == PGRES_POLLING_OK) {
        if (PQsetnonblocking(c->pg, 1) != 0)
            return connect_failed(L, c, RB_WAKE_READY);
        set_who(c);
        lua_settop(L, C_CONN);
        return 1;
    }
    if (st == PGRES_POLLING_FAILED)
        return connect_failed(L, c, RB_WAKE_READY);
    short ev = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    return rb_loop_wait(L, PQsocket(c->pg), ev, c->deadline, k_connect, 0);
}

static int k_connect(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    struct conn *c = luaL_checkudata(L, C_CONN, CONN_MT);
    enum rb_wake w = rb_loop_woke(L, NULL, 0);
    if (w != RB_WAKE_READY)
        return connect_failed(L, c, w);
    return connect_step(L, c, PQconnectPoll(c->pg));
}

/* sql.connect(conninfo, connect_timeout) -> conn | nil, failure.  conninfo
 * is a URL or "key=value ..." string, expanded by libpq. */
static int l_connect(lua_State *L)
{
    const char *info = luaL_checkstring(L, C_INFO);
    double timeout = luaL_optnumber(L, C_TIMEOUT, 5);
    luaL_argcheck(L, timeout > 0, C_TIMEOUT, "connect timeout must be positive");
    lua_settop(L, C_TIMEOUT);
    struct conn *c = lua_newuserdatauv(L, sizeof *c, 0);       /* C_CONN, closed */
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, CONN_MT);
    /* dbname is expanded from the URL; the fallback names us in
     * pg_stat_activity unless the URL sets application_name. */
    const char *keys[] = { "dbname", "fallback_application_name", NULL };
    const char *values[] = { info, "runbook", NULL };
    c->started = rb_loop_now();
    c->deadline = rb_loop_deadline(timeout);
    c->timeout = timeout;
    c->pg = PQconnectStartParams(keys, values, 1);
    if (c->pg == NULL)
        return luaL_error(L, "sql: out of memory starting a connection");
    PQsetNoticeReceiver(c->pg, on_notice, c);
    if (PQstatus(c->pg) == CONNECTION_BAD)
        return connect_failed(L, c, RB_WAKE_READY);
    return connect_step(L, c, PGRES_POLLING_WRITING);
}

/* ---- queries ---------------------------------------------------------- */

static struct conn *check_conn(lua_State *L, int idx)
{
    struct conn *c = luaL_checkudata(L, idx, CONN_MT);
    if (c->pg == NULL)
        luaL_error(L, "sql: the connection is closed");
    return c;
}

/* The shortest text that reads back as the same double, so 0.1 reaches a
 * numeric column as 0.1, not 0.10000000000000001. */
static void push_float_text(lua_State *L, double d)
{
    char buf[64];
    if (d != d) {
        lua_pushliteral(L, "NaN");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    lua_pushstring(L, strcmp(buf, "inf") == 0 ? "Infinity" : strcmp(buf, "-inf") == 0 ? "-Infinity" : buf);
}

/* Lua value -> the text PostgreSQL parses for it; nil is SQL NULL.
 * Returns NULL for NULL, else a string anchored in the Q_STRINGS table. */
static const char *param_text(lua_State *L, int i)
{
    lua_rawgeti(L, Q_PARAMS, i);
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
        lua_pop(L, 1);
        return NULL;
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1))
            lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, -1));
        else
            push_float_text(L, lua_tonumber(L, -1));
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len)
            luaL_error(L, "sql: parameter $%d contains a NUL byte, which PostgreSQL text cannot hold", i);
        lua_pushvalue(L, -1);
        break;
    }
    default:
        luaL_error(L, "sql: parameter $%d is a %s; pass a string, number, boolean or nil"
                   " (json.encode a table for a json column)", i, luaL_typename(L, -1));
    }
    lua_rawseti(L, Q_STRINGS, i);
    lua_pop(L, 1);
    lua_rawgeti(L, Q_STRINGS, i);
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1);
    return s;
}

/* The parameter values as C strings, in a userdata at Q_VALUES. */
static const char **collect_params(lua_State *L, int *nparams)
{
    lua_getfield(L, Q_PARAMS, "n");
    lua_Integer n = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : (lua_Integer)lua_rawlen(L, Q_PARAMS);
    lua_pop(L, 1);
    luaL_argcheck(L, n >= 0 && n <= 65535, Q_PARAMS, "between 0 and 65535 parameters");
    const char **values = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n ? n : 1), 0);
    lua_createtable(L, (int)n, 0);                      /* Q_STRINGS */
    for (int i = 1; i <= (int)n; i++)
        values[i - 1] = param_text(L, i);
    *nparams = (int)n;
    return values;
}

enum collect { MORE, DONE, LOST, COPY_OUT, PAUSED };

static void push_row(lua_State *L, const PGresult *r, int row);

/* One row of single-row mode: into the call's table while the caps allow,
 * else only counted.  L is NULL while a cancelled statement drains. */
static void take_row(lua_State *L, struct conn *c, const PGresult *r)
{
    lua_Integer size = 0;
    int ncols = PQnfields(r);
    c->total++;
    for (int j = 0; j < ncols; j++)
        size += PQgetlength(r, 0, j);
    if (L == NULL || c->rows_slot == 0)
        return;
    if (c->full || c->kept >= c->max_rows || c->bytes + size > c->max_bytes) {
        c->full = 1;
        return;
    }
    push_row(L, r, 0);
    lua_rawseti(L, c->rows_slot, ++c->kept);
    c->bytes += size;
}

/* Keep the first error and the last other result of a call. */
static void keep_result(struct conn *c, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
        if (c->err == NULL) {
            c->err = r;
            return;
        }
    } else if (st != PGRES_COPY_IN && st != PGRES_COPY_OUT && st != PGRES_COPY_BOTH) {
        PQclear(c->res);
        c->res = r;
        return;
    }
    PQclear(r);
}

/* Take every result libpq has complete, without blocking; a fetch stops
 * when it has its rows. */
static enum collect collect(lua_State *L, struct conn *c)
{
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL)
            return PQstatus(c->pg) == CONNECTION_BAD ? LOST : DONE;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            take_row(L, c, r);
            PQclear(r);
            if (c->pause && c->kept >= c->max_rows)
                return PAUSED;
            continue;
        }
        keep_result(c, r);
        /* A COPY would wait for data this API never sends or reads. */
        if (st == PGRES_COPY_IN && PQputCopyEnd(c->pg, "COPY FROM STDIN is not supported by runbook's sql") < 0)
            return LOST;
        if (st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
            return COPY_OUT;
    }
    return PQstatus(c->pg) == CONNECTION_BAD ? LOST : MORE;
}

/* The notices of the call, or nil when there were none. */
static void push_notices(lua_State *L, struct conn *c)
{
    if (c->nnotices == 0 && c->dropped == 0) {
        lua_pushnil(L);
        return;
    }
    lua_createtable(L, c->nnotices, 1);
    for (int i = 0; i < c->nnotices; i++) {
        lua_pushstring(L, c->notices[i]);
        lua_rawseti(L, -2, i + 1);
    }
    if (c->dropped > 0) {
        lua_pushinteger(L, c->dropped);
        lua_setfield(L, -2, "dropped");
    }
    clear_notices(c);
}

/* nil, {kind = "server", sqlstate, message, detail, hint, position, ...} */
static int push_server_error(lua_State *L, struct conn *c)
{
    const PGresult *e = c->err;
    static const struct { int code; const char *key; } fields[] = {
        { PG_DIAG_SQLSTATE, "sqlstate" }, { PG_DIAG_SEVERITY_NONLOCALIZED, "severity" },
        { PG_DIAG_MESSAGE_PRIMARY, "message" }, { PG_DIAG_MESSAGE_DETAIL, "detail" },
        { PG_DIAG_MESSAGE_HINT, "hint" }, { PG_DIAG_STATEMENT_POSITION, "position" },
        { PG_DIAG_CONTEXT, "context" },
    };
    lua_pushnil(L);
    lua_createtable(L, 0, 10);
    lua_pushliteral(L, "server");
    lua_setfield(L, -2, "kind");
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        set_field(L, fields[i].key, PQresultErrorField(e, fields[i].code));
    if (PQresultErrorField(e, PG_DIAG_MESSAGE_PRIMARY) == NULL)
        set_field(L, "message", PQresultErrorMessage(e));
    set_field(L, "who", c->who);
    push_notices(L, c);
    lua_setfield(L, -2, "notices");
    clear_results(c);
    return 2;
}

/* nil, {kind = "lost" | "closed" | "timeout" | "interrupt" | "cancel", ...} */
static int push_failure(lua_State *L, struct conn *c, const char *kind, const char *message)
{
    lua_pushnil(L);
    lua_createtable(L, 0, 6);
    set_field(L, "kind", kind);
    set_field(L, "message", message);
    set_field(L, "who", c->who);
    lua_pushnumber(L, rb_loop_now() - c->started);
    lua_setfield(L, -2, "elapsed");
    lua_pushnumber(L, c->timeout);
    lua_setfield(L, -2, "timeout");
    push_notices(L, c);
    lua_setfield(L, -2, "notices");
    return 2;
}

/* The connection broke mid-call: report libpq's reason and close it, so the
 * caller opens a fresh one next time. */
static int query_lost(lua_State *L, struct conn *c)
{
    call_over(c);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", c->pg ? PQerrorMessage(c->pg) : "closed");
    push_failure(L, c, "lost", msg);
    conn_close(c);
    return 2;
}

/* The server is streaming data this API cannot take: close rather than
 * leave the connection in the middle of it. */
static int query_unsupported(lua_State *L, struct conn *c, const char *what)
{
    call_over(c);
    push_failure(L, c, "unsupported", what);
    conn_close(c);
    return 2;
}

static void push_value(lua_State *L, const PGresult *r, int row, int col, Oid type)
{
    const char *v = PQgetvalue(r, row, col);
    switch (type) {
    case INT2OID: case INT4OID: case INT8OID: case OIDOID:
        lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
        break;
    case FLOAT4OID: case FLOAT8OID: case NUMERICOID:
        lua_pushnumber(L, (lua_Number)strtod(v, NULL));
        break;
    case BOOLOID:
        lua_pushboolean(L, v[0] == 't');
        break;
    default:
        lua_pushlstring(L, v, (size_t)PQgetlength(r, row, col));
    }
}

/* A row keyed by column name; NULL stays absent (nil). */
static void push_row(lua_State *L, const PGresult *r, int row)
{
    int ncols = PQnfields(r);
    lua_createtable(L, 0, ncols);
    for (int j = 0; j < ncols; j++) {
        if (PQgetisnull(r, row, j))
            continue;
        push_value(L, r, row, j, PQftype(r, j));
        lua_setfield(L, -2, PQfname(r, j));
    }
}

/* The 4th result of a capped query: nil, or {total, kept, bytes} when the
 * caps cut it. */
static void push_cut(lua_State *L, struct conn *c)
{
    if (!c->full) {
        lua_pushnil(L);
        return;
    }
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, c->total);
    lua_setfield(L, -2, "total");
    lua_pushinteger(L, c->kept);
    lua_setfield(L, -2, "kept");
    lua_pushinteger(L, c->bytes);
    lua_setfield(L, -2, "bytes");
}

/* rows: rows, status, notices, cut; exec: affected, status, notices;
 * simple: true, status, notices; fetch: rows, true, status, notices. */
static int query_done(lua_State *L, struct conn *c)
{
    int slot = c->rows_slot;
    call_over(c);
    if (c->err != NULL)
        return push_server_error(L, c);
    const PGresult *r = c->res;
    if (c->mode == M_FETCH) {
        lua_pushvalue(L, slot);
        lua_pushboolean(L, 1);
    } else if (c->mode == M_ROWS)
        lua_pushvalue(L, slot);
    else if (c->mode == M_EXEC)
        lua_pushinteger(L, r ? (lua_Integer)strtoll(PQcmdTuples((PGresult *)r), NULL, 10) : 0);
    else
        lua_pushboolean(L, 1);
    lua_pushstring(L, r ? PQcmdStatus((PGresult *)r) : "");
    push_notices(L, c);
    if (c->mode == M_ROWS)
        push_cut(L, c);
    clear_results(c);
    return c->mode == M_ROWS || c->mode == M_FETCH ? 4 : 3;
}

/*
 * Stop the statement in flight: ask the server to cancel it, then read its
 * reply (an error) so the connection is ready for the next call.  The wait
 * here is a private poll, bounded by DRAIN_SECONDS, because it runs after
 * Ctrl-C, when the loop ends every wait at once.  PQcancel itself blocks
 * while it connects to the server's port (libpq 15 has no asynchronous
 * cancel); on loopback or a live server that is a millisecond.
 */
static int cancel_and_drain(struct conn *c)
{
    char errbuf[256];
    c->rows_slot = 0;
    c->pause = 0;
    PGcancel *cancel = PQgetCancel(c->pg);
    int sent = cancel != NULL && PQcancel(cancel, errbuf, sizeof errbuf);
    PQfreeCancel(cancel);
    if (!sent)
        return 0;
    double end = rb_loop_now() + DRAIN_SECONDS;
    for (;;) {
        if (PQflush(c->pg) < 0)
            return 0;
        enum collect st = collect(NULL, c);
        if (st != MORE)
            return st == DONE;
        double left = end - rb_loop_now();
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = PQsocket(c->pg), .events = POLLIN, .revents = 0 };
        if (poll(&p, 1, (int)(left * 1000) + 1) < 0 && errno != EINTR)
            return 0;
        if (!PQconsumeInput(c->pg))
            return 0;
    }
}

static int query_abort(lua_State *L, struct conn *c, enum rb_wake w)
{
    call_over(c);
    int drained = cancel_and_drain(c);
    clear_results(c);
    push_failure(L, c, wake_name(w), NULL);
    lua_pushboolean(L, drained);
    lua_setfield(L, -2, "cancelled");
    if (!drained)
        conn_close(c);
    return 2;
}

static int k_query(lua_State *L, int status, lua_KContext ctx);

/* Send what is buffered, take what has arrived, wait for the rest.  (With
 * TLS, libpq's async API could miss records over 8 kB left inside OpenSSL;
 * PostgreSQL's server never sends larger ones.) */
static int query_pump(lua_State *L, struct conn *c)
{
    int pending = PQflush(c->pg);
    if (pending < 0)
        return query_lost(L, c);
    enum collect st = collect(L, c);
    if (st == PAUSED) {
        lua_pushvalue(L, c->rows_slot);
        lua_pushboolean(L, 0);
        c->rows_slot = 0;
        return 2;
    }
    if (st == LOST)
        return query_lost(L, c);
    if (st == COPY_OUT)
        return query_unsupported(L, c, "COPY ... TO STDOUT is not supported (select the rows instead)");
    if (st == DONE && pending == 0)
        return query_done(L, c);
    short ev = POLLIN | (pending ? POLLOUT : 0);
    return rb_loop_wait(L, PQsocket(c->pg), ev, c->deadline, k_query, 0);
}

static int k_query(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    struct conn *c = luaL_checkudata(L, Q_CONN, CONN_MT);
    if (c->pg == NULL) {
        call_over(c);
        return push_failure(L, c, "closed", "the connection was closed during the call");
    }
    enum rb_wake w = rb_loop_woke(L, NULL, 0);
    if (w != RB_WAKE_READY)
        return query_abort(L, c, w);
    if (!PQconsumeInput(c->pg))
        return query_lost(L, c);
    return query_pump(L, c);
}

/* Start the calls' counters; rows go to the table at slot (0: none). */
static void start_call(struct conn *c, int slot, lua_Integer max_rows, lua_Integer max_bytes,
                       double timeout)
{
    c->rows_slot = slot;
    c->max_rows = max_rows;
    c->max_bytes = max_bytes;
    c->kept = c->bytes = c->total = 0;
    c->full = 0;
    c->timeout = timeout;
    c->started = rb_loop_now();
    c->deadline = rb_loop_deadline(timeout);
}

/* conn:query(sql, params, timeout, mode, max_rows, max_bytes): params is
 * {n = N, [i] = value}; mode "rows" (default: one statement, never more, so
 * a dry run's READ ONLY wrapper cannot be ended from inside; at most
 * max_rows rows and max_bytes bytes of values are kept), "stream" (the same
 * statement, its rows left for conn:fetch), "exec" (several statements when
 * there are no parameters), or "simple" (the stdlib's own BEGIN/COMMIT). */
static int l_query(lua_State *L)
{
    static const char *const modes[] = { "rows", "exec", "simple", "stream", NULL };
    struct conn *c = check_conn(L, Q_CONN);
    const char *sql = luaL_checkstring(L, Q_SQL);
    luaL_checktype(L, Q_PARAMS, LUA_TTABLE);
    double timeout = luaL_optnumber(L, Q_TIMEOUT, 30);
    int mode = luaL_checkoption(L, Q_MODE, "rows", modes);
    lua_Integer max_rows = luaL_optinteger(L, Q_MODE + 1, LUA_MAXINTEGER);
    lua_Integer max_bytes = luaL_optinteger(L, Q_MODE + 2, LUA_MAXINTEGER);
    luaL_argcheck(L, timeout > 0, Q_TIMEOUT, "timeout must be positive");
    luaL_argcheck(L, max_rows >= 0, Q_MODE + 1, "max_rows must not be negative");
    luaL_argcheck(L, max_bytes >= 0, Q_MODE + 2, "max_bytes must not be negative");
    if (c->busy)
        return luaL_error(L, "sql: the connection to %s is busy with another call "
                          "(one call at a time per connection)", c->who);
    lua_settop(L, Q_MODE);
    int n = 0;
    const char **values = collect_params(L, &n);
    lua_newtable(L);                                    /* Q_ROWS */
    clear_results(c);
    clear_notices(c);
    /* Without parameters an exec may be a script of several statements,
     * which only the simple protocol runs (as one implicit transaction). */
    int one_by_one = mode == M_ROWS || mode == M_STREAM;
    int sent = !one_by_one && n == 0
        ? PQsendQuery(c->pg, sql)
        : PQsendQueryParams(c->pg, sql, n, NULL, values, NULL, NULL, 0);
    if (!sent || (one_by_one && !PQsetSingleRowMode(c->pg)))
        return query_lost(L, c);
    c->busy = 1;
    c->mode = (enum mode)mode;
    start_call(c, one_by_one ? Q_ROWS : 0, max_rows, max_bytes, timeout);
    if (mode == M_STREAM) {
        c->streaming = 1;
        lua_pushboolean(L, 1);
        return 1;
    }
    return query_pump(L, c);
}

/* conn:fetch(n, timeout, discard) -> rows, finished[, status, notices]:
 * the next n rows of the open stream (fewer at its end, when finished is
 * true); with discard, reads to the end keeping nothing (a loop that
 * stopped early).  A failure is nil, failure, as for query. */
static int l_fetch(lua_State *L)
{
    struct conn *c = check_conn(L, F_CONN);
    lua_Integer n = luaL_checkinteger(L, F_N);
    double timeout = luaL_optnumber(L, F_TIMEOUT, 30);
    int discard = lua_toboolean(L, F_DISCARD);
    luaL_argcheck(L, n > 0, F_N, "the number of rows must be positive");
    luaL_argcheck(L, timeout > 0, F_TIMEOUT, "timeout must be positive");
    if (!c->streaming)
        return luaL_error(L, "sql: no stream is open on the connection to %s", c->who);
    lua_settop(L, F_DISCARD);
    lua_createtable(L, discard ? 0 : (int)(n < 1024 ? n : 1024), 0);   /* F_ROWS */
    c->mode = M_FETCH;
    start_call(c, discard ? 0 : F_ROWS, n, LUA_MAXINTEGER, timeout);
    c->pause = !discard;
    return query_pump(L, c);
}

/* ---- notifications ---------------------------------------------------- */

/* channel, payload, pid of the next notification libpq holds; 0 if none. */
static int pop_notify(lua_State *L)
{
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
    PGnotify *n = PQnotifies(c->pg);
    if (n == NULL)
        return 0;
    lua_pushstring(L, n->relname);
    lua_pushstring(L, n->extra);
    lua_pushinteger(L, n->be_pid);
    PQfreemem(n);
    return 3;
}

static int wait_failed(lua_State *L, struct conn *c, const char *why)
{
    c->busy = 0;
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
}

static int k_wait(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (c->pg == NULL)
        return wait_failed(L, c, "closed");
    enum rb_wake w = rb_loop_woke(L, NULL, 0);
    if (w != RB_WAKE_READY)
        return wait_failed(L, c, wake_name(w));
    if (!PQconsumeInput(c->pg))
        return wait_failed(L, c, "lost");
    int n = pop_notify(L);
    if (n > 0) {
        c->busy = 0;
        return n;
    }
    return rb_loop_wait(L, PQsocket(c->pg), POLLIN, c->deadline, k_wait, 0);
}

/* conn:wait(timeout) -> channel, payload, pid | nil, why: the next
 * notification of a channel this connection LISTENs to, waiting at most
 * timeout seconds; why is "timeout", "interrupt", "cancel", "lost" (the
 * connection broke) or "closed".  One that came in with a reply earlier
 * is returned at once. */
static int l_wait(lua_State *L)
{
    struct conn *c = check_conn(L, 1);
    double timeout = luaL_checknumber(L, 2);
    luaL_argcheck(L, timeout > 0, 2, "timeout must be positive");
    if (c->busy)
        return luaL_error(L, "sql: the connection to %s is busy with another call "
                          "(one call at a time per connection)", c->who);
    lua_settop(L, 2);
    int n = pop_notify(L);
    if (n > 0)
        return n;
    c->busy = 1;
    c->deadline = rb_loop_deadline(timeout);
    return rb_loop_wait(L, PQsocket(c->pg), POLLIN, c->deadline, k_wait, 0);
}

/* ---- the rest --------------------------------------------------------- */

static int l_close(lua_State *L)
{
    conn_close(luaL_checkudata(L, 1, CONN_MT));
    return 0;
}

/* conn:status() -> "ok" | "bad" | "closed" */
static int l_status(lua_State *L)
{
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
    lua_pushstring(L, c->pg == NULL ? "closed" : PQstatus(c->pg) == CONNECTION_OK ? "ok" : "bad");
    return 1;
}

/* conn:txstatus() -> "idle" | "active" | "intrans" | "inerror" | "unknown" */
static int l_txstatus(lua_State *L)
{
    static const char *const names[] = { "idle", "active", "intrans", "inerror", "unknown" };
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
    PGTransactionStatusType t = c->pg ? PQtransactionStatus(c->pg) : PQTRANS_UNKNOWN;
    lua_pushstring(L, names[t <= PQTRANS_UNKNOWN ? t : PQTRANS_UNKNOWN]);
    return 1;
}

/* conn:info() -> {who, host, port, db, user, pid, server_version, tls} */
static int l_info(lua_State *L)
{
    struct conn *c = check_conn(L, 1);
    lua_createtable(L, 0, 8);
    set_field(L, "who", c->who);
    set_field(L, "host", PQhost(c->pg));
    set_field(L, "port", PQport(c->pg));
    set_field(L, "db", PQdb(c->pg));
    set_field(L, "user", PQuser(c->pg));
    lua_pushinteger(L, PQbackendPID(c->pg));
    lua_setfield(L, -2, "pid");
    lua_pushinteger(L, PQserverVersion(c->pg));
    lua_setfield(L, -2, "server_version");
    lua_pushboolean(L, PQsslInUse(c->pg));
    lua_setfield(L, -2, "tls");
    return 1;
}

static int l_tostring(lua_State *L)
{
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
    lua_pushfstring(L, "sql connection %s (%s)", c->who, c->pg ? "open" : "closed");
    return 1;
}

/* sql.parse(conninfo) -> {key = value} of the options it sets | nil, why.
 * Lets the stdlib name the server and hide the password before connecting. */
static int l_parse(lua_State *L)
{
    const char *info = luaL_checkstring(L, 1);
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(info, &err);
    if (opts == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, err ? err : "out of memory");
        PQfreemem(err);
        return 2;
    }
    lua_newtable(L);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        set_field(L, o->keyword, o->val);
    PQconninfoFree(opts);
    return 1;
}

int luaopen_runbook_sql(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "connect", l_connect },
        { "parse", l_parse },
        { NULL, NULL },
    };
    static const luaL_Reg methods[] = {
        { "query", l_query },
        { "fetch", l_fetch },
        { "wait", l_wait },
        { "close", l_close },
        { "status", l_status },
        { "txstatus", l_txstatus },
        { "info", l_info },
        { NULL, NULL },
    };
    rb_class(L, CONN_MT, conn_gc, l_tostring, methods);
    luaL_newlib(L, funcs);
    return 1;
}
