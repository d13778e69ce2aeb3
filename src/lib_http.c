/*
 * lib_http.c: HTTP(S) requests through libcurl's multi interface, on the
 * event loop.
 *
 * http.request{method=, url=, headers={"Name: value", ...}, body=, timeout=,
 * connect_timeout=, insecure=, cacert=, max_redirects=, follow=, fresh=, who=}
 * returns {status, headers, body, time, url, redirects, reused, tls}, or nil
 * and the facts of the failure: {kind = "resolve" | "refused" | "timeout" |
 * "tls" | "protocol" | "closed", stage, problem, who, host, port, addr,
 * errno, reason, ...}, which stdlib/runbook/networds.lua words.  Policy (JSON
 * bodies, expect=, dry run, the transcript, redaction) is in
 * stdlib/runbook/prim/http.lua.
 *
 * One CURLM per lua_State, in the registry, so connections to the same host
 * are reused across calls and across `parallel` tasks; finished easy handles
 * are kept for the next requests, and TLS sessions (in a CURLSH) for new
 * connections.  libcurl tells us through CURLMOPT_SOCKETFUNCTION which
 * sockets each transfer needs and through CURLMOPT_TIMERFUNCTION when it
 * next wants to be called; a request waits with rb_loop_waitv on its own
 * transfer's sockets, until the earlier of its own deadline and curl's
 * timer, then calls curl_multi_socket_action.
 *
 * Several tasks share the multi, so one task's curl_multi_socket_action can
 * finish another task's transfer (through an expired curl timer).  Finished
 * transfers are therefore recorded on their own request (done, result) and
 * taken out of the multi by whoever reads them; each task only ever looks at
 * its own request.  A task whose transfer was finished by someone else still
 * wakes: its wait's deadline was capped by curl's timer, which is what
 * finished it, and every wait is capped at RECHECK seconds besides.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <lauxlib.h>

#include "runbook/host.h"
#include "runbook/buf.h"
#include "runbook/loop.h"
#include "runbook/net.h"

#define MULTI_MT "runbook.http.multi"
#define REQUEST_MT "runbook.http.request"
#define MULTI_KEY "runbook.http.curlm"      /* registry: this state's multi */
#define BODY_CAP (64u << 20)                /* refuse response bodies above 64 MiB */
#define HEAD_CAP (1u << 20)
#define RECHECK 1.0             /* longest a wait goes without asking curl again */
#define MAX_CONNECTS 64         /* idle connections kept for reuse */
#define TLS_CACHE_MAX 256
#define POOL_MAX 16             /* easy handles kept for the next requests */

struct sock {
    curl_socket_t fd;
    int what;               /* CURL_POLL_IN / _OUT / _INOUT */
    CURL *owner;            /* the transfer that uses it (no multiplexing) */
};

struct request;

struct multi {
    CURLM *m;
    CURLSH *sh;
    double timer;           /* when curl wants socket_action(TIMEOUT); 0 none */
    rb_buf socks;           /* nsocks struct sock records */
    int nsocks;
    struct request *attached;   /* requests whose easy handle is in m */
    int tls_cached;
    CURL *idle[POOL_MAX];       /* finished easy handles, reset, for reuse */
    int nidle;
};

struct request {
    CURL *e;
    struct multi *mu;       /* set while e is in the multi */
    struct request *prev, *next;
    struct curl_slist *headers;
    rb_buf body, head;      /* capped at BODY_CAP, HEAD_CAP: over says more came */
    int done;
    CURLcode result;
    int https, insecure;
    double started, deadline, timeout, connect_timeout;
    struct pollfd wait[RB_LOOP_MAXFD];
    int nwait;
    char errbuf[CURL_ERROR_SIZE];
};

/* Stack slots of http.request and its continuation.  The multi comes
 * before the first request, so that lua_close, which runs finalizers in
 * the reverse order of creation, closes requests before their multi. */
enum { S_SPEC = 1, S_MULTI, S_REQ, S_BODY, S_WHO };

/* ---- buffers and curl callbacks --------------------------------------- */

/* Returning less than given makes curl stop with CURLE_WRITE_ERROR. */
static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    struct request *r = ud;
    return rb_buf_add(&r->body, data, size * n) == 0 ? size * n : 0;
}

/* Keep the header block of the last response only: a redirect or a
 * "100 Continue" starts a new one with its status line. */
static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    struct request *r = ud;
    if (size * n >= 5 && memcmp(data, "HTTP/", 5) == 0)
        r->head.len = 0;
    return rb_buf_add(&r->head, data, size * n) == 0 ? size * n : 0;
}

static struct sock *socks(const struct multi *mu)
{
    return (struct sock *)mu->socks.p;
}

/* Forget socket i: the last one takes its place. */
static void drop_sock(struct multi *mu, int i)
{
    socks(mu)[i] = socks(mu)[--mu->nsocks];
    mu->socks.len -= sizeof(struct sock);
}

static int find_sock(const struct multi *mu, curl_socket_t fd)
{
    for (int i = 0; i < mu->nsocks; i++)
        if (socks(mu)[i].fd == fd)
            return i;
    return -1;
}

/* CURLMOPT_SOCKETFUNCTION: remember which transfer needs which socket. */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
    (void)sockp;
    struct multi *mu = userp;
    int i = find_sock(mu, fd);
    if (what == CURL_POLL_REMOVE) {
        if (i >= 0)
            drop_sock(mu, i);
        return 0;
    }
    if (i < 0) {
        if (rb_buf_reserve(&mu->socks, sizeof(struct sock)) == NULL)
            return -1;
        mu->socks.len += sizeof(struct sock);
        i = mu->nsocks++;
    }
    socks(mu)[i].fd = fd;
    socks(mu)[i].what = what;
    socks(mu)[i].owner = e;
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: when curl next wants socket_action(TIMEOUT). */
static int on_timer(CURLM *m, long ms, void *userp)
{
    (void)m;
    struct multi *mu = userp;
    mu->timer = ms < 0 ? 0 : rb_loop_now() + (double)ms / 1000.0;
    return 0;
}

/* ---- the shared multi --------------------------------------------------- */

static void detach(struct multi *mu, struct request *r, CURL *e)
{
    if (mu->m != NULL)
        curl_multi_remove_handle(mu->m, e);
    for (int i = mu->nsocks - 1; i >= 0; i--)     /* sockets curl left behind */
        if (socks(mu)[i].owner == e)
            drop_sock(mu, i);
    if (r->prev)
        r->prev->next = r->next;
    else
        mu->attached = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->mu = NULL;
}

static int multi_gc(lua_State *L)
{
    struct multi *mu = luaL_checkudata(L, 1, MULTI_MT);
    if (mu->m == NULL)
        return 0;
    while (mu->attached != NULL)
        detach(mu, mu->attached, mu->attached->e);
    CURLM *m = mu->m;
    mu->m = NULL;
    curl_multi_cleanup(m);
    while (mu->nidle > 0)
        curl_easy_cleanup(mu->idle[--mu->nidle]);
    if (mu->sh != NULL)
        curl_share_cleanup(mu->sh);
    mu->sh = NULL;
    rb_buf_free(&mu->socks);
    mu->nsocks = 0;
    return 0;
}

/* Multiplexing stays off (CURLPIPE_NOTHING) so that a socket belongs to one
 * transfer at a time, which is what lets each task wait on its own sockets;
 * connections are still kept alive and reused one request after another.
 * No per-host connection limit either: a transfer queued for a free
 * connection would wait on no socket of its own. */
static void multi_open(lua_State *L, struct multi *mu)
{
    mu->m = curl_multi_init();
    mu->sh = curl_share_init();
    if (mu->m == NULL || mu->sh == NULL)
        luaL_error(L, "http: cannot initialise libcurl (out of memory?)");
    curl_share_setopt(mu->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_multi_setopt(mu->m, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(mu->m, CURLMOPT_SOCKETDATA, mu);
    curl_multi_setopt(mu->m, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(mu->m, CURLMOPT_TIMERDATA, mu);
    curl_multi_setopt(mu->m, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    curl_multi_setopt(mu->m, CURLMOPT_MAXCONNECTS, (long)MAX_CONNECTS);
}

/* Push this state's multi, creating it on first use.  [-0, +1, e] */
static struct multi *push_multi(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, MULTI_KEY) == LUA_TUSERDATA)
        return luaL_checkudata(L, -1, MULTI_MT);
    lua_pop(L, 1);
    struct multi *mu = lua_newuserdatauv(L, sizeof *mu, 1);
    memset(mu, 0, sizeof *mu);
    luaL_setmetatable(L, MULTI_MT);
    lua_newtable(L);                    /* TLS details by connection */
    lua_setiuservalue(L, -2, 1);
    multi_open(L, mu);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, MULTI_KEY);
    return mu;
}

/* Record every finished transfer on its request and take it out of the
 * multi, whichever task it belongs to. */
static void collect_done(struct multi *mu)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(mu->m, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        CURLcode rc = msg->data.result;     /* msg dies with remove_handle */
        char *priv = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        struct request *r = (struct request *)priv;
        if (r != NULL && r->e == e) {
            r->done = 1;
            r->result = rc;
            detach(mu, r, e);
        }
    }
}

/* Tell curl what the wait saw: the ready sockets, and its timer if due. */
static void drive(struct multi *mu, const struct pollfd *pf, int n, int force_timer)
{
    int running;
    for (int i = 0; i < n; i++) {
        int ev = 0;
        if (pf[i].revents & (POLLIN | POLLHUP))
            ev |= CURL_CSELECT_IN;
        if (pf[i].revents & POLLOUT)
            ev |= CURL_CSELECT_OUT;
        if (pf[i].revents & POLLERR)
            ev |= CURL_CSELECT_ERR;
        if (ev != 0)
            curl_multi_socket_action(mu->m, pf[i].fd, ev, &running);
    }
    if (force_timer || (mu->timer > 0 && rb_loop_now() >= mu->timer)) {
        curl_multi_socket_action(mu->m, CURL_SOCKET_TIMEOUT, 0, &running);
        /* curl calls the timer function only when its next timeout changes;
         * ask it directly so a serviced timer never stays in the past */
        long ms = -1;
        curl_multi_timeout(mu->m, &ms);
        mu->timer = ms < 0 ? 0 : rb_loop_now() + (double)ms / 1000.0;
    }
    collect_done(mu);
}

/* ---- requests ------------------------------------------------------------ */

/* Close the request; with pool given, its easy handle is kept there for
 * the next request (creating one costs more than resetting it). */
static void request_close(struct request *r, struct multi *pool)
{
    CURL *e = r->e;
    r->e = NULL;
    if (e != NULL) {
        if (r->mu != NULL)
            detach(r->mu, r, e);
        if (pool != NULL && pool->m != NULL && pool->nidle < POOL_MAX) {
            curl_easy_reset(e);
            pool->idle[pool->nidle++] = e;
        } else {
            curl_easy_cleanup(e);
        }
    }
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    rb_buf_free(&r->body);
    rb_buf_free(&r->head);
}

static int request_gc(lua_State *L)
{
    request_close(luaL_checkudata(L, 1, REQUEST_MT), NULL);
    return 0;
}

static int k_request(lua_State *L, int status, lua_KContext ctx);

static int wait_more(lua_State *L, struct request *r, struct multi *mu)
{
    r->nwait = 0;
    for (int i = 0; i < mu->nsocks && r->nwait < RB_LOOP_MAXFD; i++) {
        const struct sock *s = &socks(mu)[i];
        if (s->owner != r->e)
            continue;
        struct pollfd *p = &r->wait[r->nwait++];
        p->fd = s->fd;
        p->events = (short)(((s->what & CURL_POLL_IN) ? POLLIN : 0) |
                            ((s->what & CURL_POLL_OUT) ? POLLOUT : 0));
        p->revents = 0;
    }
    double deadline = r->deadline;
    if (mu->timer > 0 && mu->timer < deadline)
        deadline = mu->timer;
    if (rb_loop_now() + RECHECK < deadline)
        deadline = rb_loop_now() + RECHECK;
    return rb_loop_waitv(L, r->wait, r->nwait, deadline, k_request, 0);
}

/* "http GET https://h/x" given by the caller, or made from method and URL. */
static const char *who(lua_State *L)
{
    return lua_tostring(L, S_WHO);
}

static long info_long(CURL *e, CURLINFO what)
{
    long v = 0;
    curl_easy_getinfo(e, what, &v);
    return v;
}

static curl_off_t info_off(CURL *e, CURLINFO what)
{
    curl_off_t v = 0;
    curl_easy_getinfo(e, what, &v);
    return v;
}

/* Where a request that ran out of time was stuck. */
static const char *timeout_stage(const struct request *r)
{
    /* curl publishes the local port once TCP is connected, but the connect
     * time only once TLS is up too */
    int connected = info_long(r->e, CURLINFO_LOCAL_PORT) != 0;
    if (!connected && info_off(r->e, CURLINFO_NAMELOOKUP_TIME_T) == 0)
        return "resolve";
    if (!connected)
        return "connect";
    if (r->https && info_off(r->e, CURLINFO_APPCONNECT_TIME_T) == 0)
        return "tls";
    return "call";
}

/* host and port of the request's URL into the facts on top. */
static void set_url_parts(lua_State *L)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    lua_getfield(L, S_SPEC, "url");
    const char *url = lua_tostring(L, -1);
    lua_pop(L, 1);              /* the string stays in the spec */
    if (u != NULL && url != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
            rb_net_set(L, "host", host);
        if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
            lua_pushinteger(L, atoi(port));
            lua_setfield(L, -2, "port");
        }
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

/* nil, {kind, stage, who, host, port}: the facts of a failed request, to
 * which the caller adds its own.  [-0, +2, m] */
static void push_facts(lua_State *L, const char *kind, const char *stage)
{
    lua_pushnil(L);
    rb_net_push_facts(L, kind, stage);
    rb_net_set(L, "who", who(L));
    set_url_parts(L);
}

/* nil, facts of a request out of time; limit names the option that set it. */
static int fail_timeout(lua_State *L, struct request *r, double seconds, const char *limit)
{
    push_facts(L, "timeout", timeout_stage(r));
    rb_net_set(L, "wake", "timeout");
    rb_net_set(L, "limit", limit);
    lua_pushnumber(L, seconds);
    lua_setfield(L, -2, "timeout");
    request_close(r, NULL);
    return 2;
}

/* kind, stage and problem of a curl error; NULL kind for one runbook has
 * no facts of its own for (the facts then carry curl's own words). */
static const char *curl_kind(CURLcode rc, const char **stage, const char **problem)
{
    *problem = NULL;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST: *stage = "resolve"; return "resolve";
    case CURLE_COULDNT_CONNECT: *stage = "connect"; return "refused";
    case CURLE_PEER_FAILED_VERIFICATION: *stage = "tls"; *problem = "verify"; return "tls";
    case CURLE_SSL_CONNECT_ERROR: *stage = "tls"; *problem = "handshake"; return "tls";
    case CURLE_SSL_CACERT_BADFILE: *stage = "tls"; *problem = "cafile"; return "tls";
    case CURLE_TOO_MANY_REDIRECTS: *stage = "call"; *problem = "redirects"; return "protocol";
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR: *stage = "call"; return "closed";
    default: *stage = "call"; *problem = "curl"; return "protocol";
    }
}

/* What curl knows of the connection: errno, the address it tried. */
static void set_conn_facts(lua_State *L, struct request *r)
{
    long os_errno = info_long(r->e, CURLINFO_OS_ERRNO);
    if (os_errno != 0)
        rb_net_set(L, "errno", strerrorname_np((int)os_errno));
    char *ip = NULL;
    if (curl_easy_getinfo(r->e, CURLINFO_PRIMARY_IP, &ip) != CURLE_OK || ip == NULL || !*ip)
        return;
    if (strchr(ip, ':') != NULL) {
        lua_pushfstring(L, "[%s]", ip);
        lua_setfield(L, -2, "addr");
    } else {
        rb_net_set(L, "addr", ip);
    }
}

/* nil, facts of a transfer curl ended with an error; closes the request. */
static int fail_curl(lua_State *L, struct request *r)
{
    if (r->result == CURLE_OPERATION_TIMEDOUT) {    /* curl's own limit: the connect's */
        /* without connect_timeout= it is timeout=, cut to at most 10 s */
        int given = lua_getfield(L, S_SPEC, "connect_timeout") != LUA_TNIL;
        lua_pop(L, 1);
        return fail_timeout(L, r, r->connect_timeout, given ? "connect_timeout" : "timeout");
    }
    const char *stage, *problem, *kind = curl_kind(r->result, &stage, &problem);
    if (r->result == CURLE_WRITE_ERROR && (r->body.over || r->head.over))
        problem = "too_large";
    push_facts(L, kind, stage);
    rb_net_set(L, "problem", problem);
    set_conn_facts(L, r);
    if (r->result == CURLE_GOT_NOTHING) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "eof");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "answered");
    }
    /* curl's errbuf repeats the host name for a failed lookup: no reason */
    if (r->result != CURLE_COULDNT_RESOLVE_HOST)
        rb_net_set(L, "reason", r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result));
    rb_net_set(L, "curl_error", curl_easy_strerror(r->result));
    lua_getfield(L, S_SPEC, "max_redirects");
    lua_pushinteger(L, luaL_optinteger(L, -1, 5));
    lua_setfield(L, -3, "max_redirects");
    lua_pop(L, 1);
    lua_pushinteger(L, (lua_Integer)(BODY_CAP >> 20));
    lua_setfield(L, -2, "cap_mib");
    request_close(r, NULL);
    return 2;
}

static void set_header(lua_State *L, int t, const char *p, const char *colon, const char *end)
{
    const char *v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    size_t nlen = (size_t)(colon - p);
    luaL_Buffer b;
    char *name = luaL_buffinitsize(L, &b, nlen);
    for (size_t i = 0; i < nlen; i++)
        name[i] = (char)tolower((unsigned char)p[i]);
    luaL_pushresultsize(&b, nlen);
    int base = lua_gettop(L);                   /* the name */
    lua_pushlstring(L, v, (size_t)(end - v));
    if (lua_getfield(L, t, lua_tostring(L, base)) == LUA_TSTRING) {
        lua_pushfstring(L, "%s, %s", lua_tostring(L, base + 2), lua_tostring(L, base + 1));
        lua_replace(L, base + 1);
    }
    lua_settop(L, base + 1);
    lua_setfield(L, t, lua_tostring(L, base));
    lua_settop(L, base - 1);
}

/* The last response's header block as a table with lower-case names;
 * repeated names are joined with ", " (RFC 9110, 5.3).  [-0, +1, m] */
static void push_headers(lua_State *L, const rb_buf *head)
{
    lua_newtable(L);
    if (head->p == NULL)
        return;
    int t = lua_gettop(L);
    const char *p = head->p, *end = head->p + head->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        int status_line = line_end - p >= 5 && memcmp(p, "HTTP/", 5) == 0;
        if (colon != NULL && colon > p && !status_line)
            set_header(L, t, p, colon, line_end);
        p = eol ? eol + 1 : end;
    }
}

/* "Jan  1 00:00:00 2030 GMT" (OpenSSL's ASN1_TIME_print, as curl passes it
 * on) to Unix time; -1 when unreadable.  Month names are read by hand so
 * the locale cannot change the result. */
static long long cert_time(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char mon[4];
    int d, hh, mm, ss, y;
    if (sscanf(s, "%3s %d %d:%d:%d %d", mon, &d, &hh, &mm, &ss, &y) != 6)
        return -1;
    const char *m = strstr(months, mon);
    if (strlen(mon) != 3 || m == NULL || (m - months) % 3 != 0)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = (int)((m - months) / 3);
    tm.tm_mday = d;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    return (long long)timegm(&tm);
}

/* The peer certificate's "Key:value" lines from CURLINFO_CERTINFO as
 * {subject, issuer, starts, expires}.  [-0, +1, m] */
static void push_cert(lua_State *L, const struct curl_slist *s, int verified)
{
    static const struct { const char *key, *field; int is_time; } fields[] = {
        { "Subject:", "subject", 0 }, { "Issuer:", "issuer", 0 },
        { "Start date:", "starts", 1 }, { "Expire date:", "expires", 1 },
    };
    lua_createtable(L, 0, 5);
    for (; s != NULL; s = s->next) {
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            size_t klen = strlen(fields[i].key);
            if (strncmp(s->data, fields[i].key, klen) != 0)
                continue;
            if (fields[i].is_time)
                lua_pushinteger(L, (lua_Integer)cert_time(s->data + klen));
            else
                lua_pushstring(L, s->data + klen);
            lua_setfield(L, -2, fields[i].field);
        }
    }
    lua_pushboolean(L, verified);
    lua_setfield(L, -2, "verified");
}

/*
 * The peer certificate of the connection the request used.  curl reports
 * it only for the request that did the handshake; a request on a reused
 * connection gets what that one saw, from a cache kept by connection
 * (addresses and ports of both ends).  [-0, +1, m]
 */
static void push_tls(lua_State *L, struct request *r, struct multi *mu)
{
    char *ip = NULL;
    curl_easy_getinfo(r->e, CURLINFO_PRIMARY_IP, &ip);
    lua_getiuservalue(L, S_MULTI, 1);
    int cache = lua_gettop(L);
    lua_pushfstring(L, "%s %d %d", ip ? ip : "?", (int)info_long(r->e, CURLINFO_PRIMARY_PORT),
                    (int)info_long(r->e, CURLINFO_LOCAL_PORT));
    struct curl_certinfo *ci = NULL;
    if (curl_easy_getinfo(r->e, CURLINFO_CERTINFO, &ci) == CURLE_OK && ci != NULL &&
        ci->num_of_certs > 0) {
        if (++mu->tls_cached > TLS_CACHE_MAX) {
            lua_newtable(L);
            lua_copy(L, -1, cache);
            lua_setiuservalue(L, S_MULTI, 1);
            mu->tls_cached = 1;
        }
        push_cert(L, ci->certinfo[0], !r->insecure);
        lua_pushvalue(L, cache + 1);
        lua_pushvalue(L, -2);
        lua_settable(L, cache);
    } else {
        lua_pushvalue(L, cache + 1);
        lua_gettable(L, cache);
    }
    lua_replace(L, cache);
    lua_settop(L, cache);
}

static int is_https(CURL *e)
{
    char *scheme = NULL;
    curl_easy_getinfo(e, CURLINFO_SCHEME, &scheme);
    return scheme != NULL && strcasecmp(scheme, "https") == 0;
}

/* The result table of a finished transfer; closes the request. */
static int finish(lua_State *L, struct request *r, struct multi *mu)
{
    if (r->result != CURLE_OK)
        return fail_curl(L, r);
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, info_long(r->e, CURLINFO_RESPONSE_CODE));
    lua_setfield(L, -2, "status");
    push_headers(L, &r->head);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    lua_setfield(L, -2, "body");
    lua_pushnumber(L, rb_loop_now() - r->started);
    lua_setfield(L, -2, "time");
    char *url = NULL;
    curl_easy_getinfo(r->e, CURLINFO_EFFECTIVE_URL, &url);
    lua_pushstring(L, url);
    lua_setfield(L, -2, "url");
    lua_pushinteger(L, info_long(r->e, CURLINFO_REDIRECT_COUNT));
    lua_setfield(L, -2, "redirects");
    lua_pushboolean(L, info_long(r->e, CURLINFO_NUM_CONNECTS) == 0);
    lua_setfield(L, -2, "reused");
    if (is_https(r->e)) {
        push_tls(L, r, mu);
        lua_setfield(L, -2, "tls");
    }
    request_close(r, mu);
    return 1;
}

static int k_request(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    struct request *r = luaL_checkudata(L, S_REQ, REQUEST_MT);
    struct multi *mu = luaL_checkudata(L, S_MULTI, MULTI_MT);
    enum rb_wake w = rb_loop_woke(L, r->wait, r->nwait);
    if (w == RB_WAKE_INTERRUPT || w == RB_WAKE_CANCEL) {
        request_close(r, NULL);
        lua_pushnil(L);
        rb_net_push_wake(L, w, "call", r->timeout);
        rb_net_set(L, "who", who(L));
        return 2;
    }
    if (!r->done)   /* a wake-up for curl's timer is not a timeout */
        drive(mu, r->wait, w == RB_WAKE_READY ? r->nwait : 0, 0);
    if (r->done)
        return finish(L, r, mu);
    if (rb_loop_now() >= r->deadline)
        return fail_timeout(L, r, r->timeout, "timeout");
    return wait_more(L, r, mu);
}

/* ---- http.request ---------------------------------------------------------- */

struct spec {
    const char *url, *method, *cacert;
    double timeout, connect_timeout;
    lua_Integer max_redirects;
    int follow, insecure, has_body, fresh;
};

static double spec_number(lua_State *L, const char *key, double def)
{
    int t = lua_getfield(L, S_SPEC, key);
    double v = t == LUA_TNIL ? def : lua_tonumber(L, -1);
    if (t != LUA_TNIL && !lua_isnumber(L, -1))
        luaL_error(L, "http: %s must be a number of seconds", key);
    lua_pop(L, 1);
    if (!(v > 0))
        luaL_error(L, "http: %s must be more than 0 seconds", key);
    return v;
}

static int spec_bool(lua_State *L, const char *key, int def)
{
    int t = lua_getfield(L, S_SPEC, key);
    int v = t == LUA_TNIL ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* A string field of the spec; it stays anchored in the spec table. */
static const char *spec_string(lua_State *L, const char *key, const char *def)
{
    int t = lua_getfield(L, S_SPEC, key);
    if (t != LUA_TNIL && t != LUA_TSTRING)
        luaL_error(L, "http: %s must be a string", key);
    const char *v = t == LUA_TNIL ? def : lua_tostring(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Check every field before anything is allocated. */
static void read_spec(lua_State *L, struct spec *sp)
{
    sp->url = spec_string(L, "url", NULL);
    luaL_argcheck(L, sp->url != NULL, S_SPEC, "url is missing");
    sp->method = spec_string(L, "method", "GET");
    luaL_argcheck(L, *sp->method && strspn(sp->method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ-") ==
                  strlen(sp->method), S_SPEC, "method must be an upper-case token like GET");
    sp->cacert = spec_string(L, "cacert", NULL);
    sp->timeout = spec_number(L, "timeout", 30);
    sp->connect_timeout = spec_number(L, "connect_timeout", sp->timeout < 10 ? sp->timeout : 10);
    lua_getfield(L, S_SPEC, "max_redirects");
    sp->max_redirects = luaL_optinteger(L, -1, 5);
    luaL_argcheck(L, sp->max_redirects >= 0, S_SPEC, "max_redirects must not be negative");
    lua_pop(L, 1);
    sp->follow = spec_bool(L, "follow", 1);
    sp->insecure = spec_bool(L, "insecure", 0);
    sp->fresh = spec_bool(L, "fresh", 0);
    int t = lua_getfield(L, S_SPEC, "body");
    luaL_argcheck(L, t == LUA_TNIL || t == LUA_TSTRING, S_SPEC, "body must be a string");
    sp->has_body = t == LUA_TSTRING;
    lua_pop(L, 1);
}

/* spec.headers ({"Name: value", ...}) into r->headers.  Without an Expect
 * header of the caller's, "Expect:" turns off curl's 100-continue dance,
 * which costs a round trip, or a second with servers that ignore it. */
static void collect_headers(lua_State *L, struct request *r)
{
    int has_expect = 0;
    if (lua_getfield(L, S_SPEC, "headers") == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
                luaL_error(L, "http: headers[%d] must be a \"Name: value\" string", (int)i);
            const char *h = lua_tostring(L, -1);
            if (strpbrk(h, "\r\n") != NULL || strchr(h, ':') == NULL)
                luaL_error(L, "http: header %d is not one \"Name: value\" line", (int)i);
            has_expect |= strncasecmp(h, "expect:", 7) == 0;
            struct curl_slist *l = curl_slist_append(r->headers, h);
            if (l == NULL)
                luaL_error(L, "http: out of memory");
            r->headers = l;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (!has_expect) {
        struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
        if (l == NULL)
            luaL_error(L, "http: out of memory");
        r->headers = l;
    }
}

static void set_method(CURL *e, const struct spec *sp, const char *body, size_t blen)
{
    if (strcmp(sp->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        return;
    }
    if (strcmp(sp->method, "POST") == 0)
        curl_easy_setopt(e, CURLOPT_POST, 1L);
    else if (strcmp(sp->method, "GET") != 0 || sp->has_body)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, sp->method);
    if (sp->has_body || strcmp(sp->method, "POST") == 0) {
        /* not copied: the body stays anchored in stack slot S_BODY */
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
    }
}

static void setup(lua_State *L, struct request *r, struct multi *mu, const struct spec *sp)
{
    CURL *e = r->e;
    size_t blen = 0;
    const char *body = lua_tolstring(L, S_BODY, &blen);
    curl_easy_setopt(e, CURLOPT_URL, sp->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_SHARE, mu->sh);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* on Ctrl-C or a timeout during a name lookup, do not wait for the
     * resolver thread to finish (libcurl leaks its little state instead) */
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "runbook/" RB_VERSION);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, sp->follow ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)sp->max_redirects);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(sp->connect_timeout * 1000));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_CERTINFO, 1L);
    if (sp->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (sp->cacert != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, sp->cacert);
    /* fresh: a connection of its own, not kept (a TLS check must see the
     * certificate served now, not the one of a connection opened before a
     * reload).  Pooled handles keep options, so both are always set. */
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, sp->fresh ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, sp->fresh ? 1L : 0L);
    set_method(e, sp, body, blen);
}

/* http.request(spec) -> {status, headers, body, time, url, redirects, reused, tls} */
static int l_request(lua_State *L)
{
    luaL_checktype(L, S_SPEC, LUA_TTABLE);
    lua_settop(L, S_SPEC);
    struct spec sp;
    read_spec(L, &sp);
    struct multi *mu = push_multi(L);                           /* S_MULTI */
    struct request *r = lua_newuserdatauv(L, sizeof *r, 0);    /* S_REQ, closed */
    memset(r, 0, sizeof *r);
    rb_buf_init(&r->body, BODY_CAP);
    rb_buf_init(&r->head, HEAD_CAP);
    luaL_setmetatable(L, REQUEST_MT);
    lua_getfield(L, S_SPEC, "body");                            /* S_BODY */
    if (lua_getfield(L, S_SPEC, "who") != LUA_TSTRING) {        /* S_WHO */
        lua_pop(L, 1);
        lua_pushfstring(L, "http %s %s", sp.method, sp.url);
    }
    collect_headers(L, r);
    r->e = mu->nidle > 0 ? mu->idle[--mu->nidle] : curl_easy_init();
    if (r->e == NULL)
        return luaL_error(L, "%s: cannot create a libcurl handle (out of memory?)", who(L));
    setup(L, r, mu, &sp);
    r->https = strncasecmp(sp.url, "https:", 6) == 0;
    r->insecure = sp.insecure;
    r->timeout = sp.timeout;
    r->connect_timeout = sp.connect_timeout;
    r->started = rb_loop_now();
    r->deadline = r->started + sp.timeout;
    CURLMcode mc = curl_multi_add_handle(mu->m, r->e);
    if (mc != CURLM_OK)
        return luaL_error(L, "%s: %s", who(L), curl_multi_strerror(mc));
    r->mu = mu;
    r->next = mu->attached;
    if (r->next)
        r->next->prev = r;
    mu->attached = r;
    drive(mu, NULL, 0, 1);      /* start it now rather than one loop round later */
    if (r->done)
        return finish(L, r, mu);
    return wait_more(L, r, mu);
}

/* http.version() -> the libcurl version string, e.g. "libcurl/7.88.1 OpenSSL/3.0.19". */
static int l_version(lua_State *L)
{
    lua_pushstring(L, curl_version());
    return 1;
}

int luaopen_runbook_http(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "request", l_request },
        { "version", l_version },
        { NULL, NULL },
    };
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return luaL_error(L, "http: cannot initialise libcurl");
    rb_class(L, MULTI_MT, multi_gc, NULL, NULL);
    rb_class(L, REQUEST_MT, request_gc, NULL, NULL);
    luaL_newlib(L, funcs);
    return 1;
}
