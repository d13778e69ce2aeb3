/*
 * TCP plumbing shared by the network primitives that open their own
 * sockets (lib_redis.c, lib_ssh.c; libcurl and libpq connect on their
 * own): a name lookup in a helper thread, so the wait has a deadline and
 * Ctrl-C works, then a non-blocking connect to each address in turn until
 * one accepts.  No waiting happens here: each call says which fd to wait
 * on (with rb_loop_wait) and the caller calls back when it is ready.
 *
 *     struct rb_net n;  rb_net_init(&n);
 *     r = rb_net_start(&n, host, port);     WAIT: n.fd, POLLIN, then rb_net_resolved
 *     r = rb_net_connect(&n);               WAIT: n.fd, POLLOUT, then rb_net_connected
 *     r = rb_net_connected(&n);             READY: fd = rb_net_take(&n)
 *                                           WAIT: that address failed, the next one
 *                                                 is under way on n.fd (POLLOUT)
 *     rb_net_close(&n);                     any time, twice is safe
 *
 * On RB_NET_FAIL the struct holds the facts of the failure (stage, errno,
 * getaddrinfo's code, the last address tried), which rb_net_push_failure
 * hands to Lua, where they are worded (stdlib/runbook/networds.lua).
 *
 * The modules compile this file in (CMake's runbook_net object library):
 * the host itself never connects, so a copy in the binary would be linked
 * out of its static core library anyway, and the unit test links it alone.
 */
#ifndef RUNBOOK_NET_H
#define RUNBOOK_NET_H

#include <lua.h>

#include "runbook/loop.h"

enum rb_net_result { RB_NET_READY = 0, RB_NET_WAIT, RB_NET_FAIL };
enum rb_net_stage { RB_NET_RESOLVE = 0, RB_NET_CONNECT };

struct rb_net_lookup;
struct addrinfo;

struct rb_net {
    struct rb_net_lookup *lookup;   /* the addresses, shared with its thread */
    const struct addrinfo *next;    /* the next address to try */
    int fd;                 /* what to wait on (lookup pipe or socket), -1 */
    int lookup_fd;          /* read end of the lookup's pipe while it runs */
    enum rb_net_stage stage;
    int err;                /* errno of the failure (EAI_SYSTEM: the lookup's errno) */
    int gai;                /* getaddrinfo's code of a failed lookup, else 0 */
    int tried;              /* addresses tried */
    char addr[64];          /* the last address tried: "127.0.0.1", "[::1]" */
    char host[256];
    char port[16];
};

/* An idle struct: nothing held, fds -1. */
void rb_net_init(struct rb_net *n);

/* Start the lookup of host:port (a numeric address needs none: READY at
 * once).  WAIT: poll n->fd for POLLIN, then call rb_net_resolved. */
enum rb_net_result rb_net_start(struct rb_net *n, const char *host, int port);

/* The lookup's thread answered: READY (addresses known) or FAIL. */
enum rb_net_result rb_net_resolved(struct rb_net *n);

/* Start connecting to the next address: WAIT (poll n->fd for POLLOUT,
 * then call rb_net_connected) or FAIL when no address is left. */
enum rb_net_result rb_net_connect(struct rb_net *n);

/* The socket under way is writable: READY when it connected (TCP_NODELAY
 * set), else the next address is tried as rb_net_connect does. */
enum rb_net_result rb_net_connected(struct rb_net *n);

/* The connected socket, now the caller's; the lookup is let go. */
int rb_net_take(struct rb_net *n);

/* Let go of everything; a lookup still running finishes on its own. */
void rb_net_close(struct rb_net *n);

/* Record how a lookup ended (getaddrinfo's rc and the errno it left):
 * the lookup thread's half, apart so a test can give it EAI_SYSTEM. */
void rb_net_lookup_failed(struct rb_net *n, int rc, int sys_errno);

/* The failure's kind for the facts table: "resolve", "refused" (no TCP
 * connection: refused, unreachable, ...) or "timeout" (ETIMEDOUT). */
const char *rb_net_kind(const struct rb_net *n);

/* The system's reason: strerror of err, or gai_strerror of gai. */
const char *rb_net_reason(const struct rb_net *n);

/* Push the facts of a failed rb_net call: {kind, stage, errno (its name,
 * "ECONNREFUSED"), reason, host, port, addr, tried}.  [-0, +1, m] */
void rb_net_push_failure(lua_State *L, const struct rb_net *n);

/* Push a facts table {kind, stage}, for the callers' own failures, to
 * which they add fields.  [-0, +1, m] */
void rb_net_push_facts(lua_State *L, const char *kind, const char *stage);

/* Push the facts of a wait that did not end READY: {kind = "timeout",
 * stage, wake = "timeout" | "interrupt" | "cancel", timeout}.  [-0, +1, m] */
void rb_net_push_wake(lua_State *L, enum rb_wake w, const char *stage, double timeout);

/* t[key] = value in the table on top, when value is not NULL.  [-0, +0, m] */
void rb_net_set(lua_State *L, const char *key, const char *value);

#endif
