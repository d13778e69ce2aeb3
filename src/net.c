/*
 * net.c: the name lookup and the try-each-address connect of the network
 * primitives (include/runbook/net.h).  One copy of what lib_redis.c and
 * lib_ssh.c each carried, and which had drifted apart: ssh dropped the
 * errno of an EAI_SYSTEM lookup failure, redis did not check that the
 * thread had answered, and only ssh named the address it tried.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runbook/net.h"

/* A lookup running in a detached thread.  The thread and the rb_net each
 * hold a reference; whoever drops the last one frees it, so an abandoned
 * lookup (timeout, Ctrl-C) finishes harmlessly. */
struct rb_net_lookup {
    atomic_int refs;
    atomic_int done;            /* rc, sys_errno and res are set */
    int wfd;                    /* the thread writes one byte, then closes */
    int rc;
    int sys_errno;              /* the thread's errno, for EAI_SYSTEM */
    struct addrinfo *res;
    char host[256];
    char port[16];
};

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void rb_net_init(struct rb_net *n)
{
    memset(n, 0, sizeof *n);
    n->fd = n->lookup_fd = -1;
}

static void lookup_unref(struct rb_net_lookup *lk)
{
    if (atomic_fetch_sub(&lk->refs, 1) == 1) {
        if (lk->res != NULL)
            freeaddrinfo(lk->res);
        free(lk);
    }
}

static void *lookup_thread(void *arg)
{
    struct rb_net_lookup *lk = arg;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    errno = 0;
    lk->rc = getaddrinfo(lk->host, lk->port, &hints, &lk->res);
    lk->sys_errno = errno;
    atomic_store(&lk->done, 1);
    ssize_t w = write(lk->wfd, "!", 1);     /* EPIPE if nobody waits: fine */
    (void)w;
    close(lk->wfd);
    lookup_unref(lk);
    return NULL;
}

static struct rb_net_lookup *lookup_new(const struct rb_net *n, int refs)
{
    struct rb_net_lookup *lk = calloc(1, sizeof *lk);
    if (lk == NULL)
        return NULL;
    memcpy(lk->host, n->host, sizeof lk->host);
    memcpy(lk->port, n->port, sizeof lk->port);
    lk->wfd = -1;
    atomic_init(&lk->refs, refs);
    atomic_init(&lk->done, 0);
    return lk;
}

static enum rb_net_result fail(struct rb_net *n, enum rb_net_stage stage, int err)
{
    n->stage = stage;
    n->err = err;
    return RB_NET_FAIL;
}

/* A numeric address needs no query: 1 when host was one. */
static int lookup_numeric(struct rb_net *n)
{
    struct rb_net_lookup *lk = lookup_new(n, 1);
    if (lk == NULL)
        return -1;
    struct addrinfo hints = { .ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM };
    if (getaddrinfo(lk->host, lk->port, &hints, &lk->res) != 0) {
        lookup_unref(lk);
        return 0;
    }
    atomic_store(&lk->done, 1);
    n->lookup = lk;
    n->next = lk->res;
    return 1;
}

/* The thread runs with every signal blocked, so that Ctrl-C always
 * reaches the thread running the loop.  0 or an errno. */
static int lookup_thread_start(struct rb_net *n)
{
    int fds[2];
    struct rb_net_lookup *lk = lookup_new(n, 2);
    if (lk == NULL)
        return ENOMEM;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        int e = errno;
        free(lk);
        return e;
    }
    lk->wfd = fds[1];
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, lookup_thread, lk);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        close(fds[0]);
        close(fds[1]);
        free(lk);
        return rc;
    }
    n->lookup = lk;
    n->fd = n->lookup_fd = fds[0];
    return 0;
}

enum rb_net_result rb_net_start(struct rb_net *n, const char *host, int port)
{
    rb_net_close(n);
    snprintf(n->host, sizeof n->host, "%s", host);
    snprintf(n->port, sizeof n->port, "%d", port);
    n->stage = RB_NET_RESOLVE;
    int numeric = lookup_numeric(n);
    if (numeric > 0)
        return RB_NET_READY;
    int e = numeric < 0 ? ENOMEM : lookup_thread_start(n);
    return e != 0 ? fail(n, RB_NET_RESOLVE, e) : RB_NET_WAIT;
}

void rb_net_lookup_failed(struct rb_net *n, int rc, int sys_errno)
{
    n->stage = RB_NET_RESOLVE;
    n->gai = rc;
    /* EAI_SYSTEM means "look at errno": keep the thread's, which is
     * the only one that says why */
    n->err = rc == EAI_SYSTEM ? sys_errno : 0;
}

enum rb_net_result rb_net_resolved(struct rb_net *n)
{
    struct rb_net_lookup *lk = n->lookup;
    close_fd(&n->lookup_fd);
    n->fd = -1;
    if (lk == NULL || !atomic_load(&lk->done))     /* the pipe closed without an answer */
        return fail(n, RB_NET_RESOLVE, EPIPE);
    if (lk->rc != 0) {
        rb_net_lookup_failed(n, lk->rc, lk->sys_errno);
        return RB_NET_FAIL;
    }
    n->next = lk->res;
    return RB_NET_READY;
}

static void addr_text(const struct addrinfo *ai, char *out, size_t len)
{
    char ip[NI_MAXHOST];
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, ip, sizeof ip, NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(ip, sizeof ip, "?");
    snprintf(out, len, ai->ai_family == AF_INET6 ? "[%s]" : "%s", ip);
}

enum rb_net_result rb_net_connect(struct rb_net *n)
{
    close_fd(&n->fd);
    n->stage = RB_NET_CONNECT;
    while (n->next != NULL) {
        const struct addrinfo *ai = n->next;
        n->next = ai->ai_next;
        n->tried++;
        addr_text(ai, n->addr, sizeof n->addr);
        n->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                       ai->ai_protocol);
        if (n->fd < 0) {
            n->err = errno;
            continue;
        }
        if (connect(n->fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS)
            return RB_NET_WAIT;
        n->err = errno;
        close_fd(&n->fd);
    }
    /* a name with no address of a usable family is an answer without one */
    return n->tried == 0 ? fail(n, RB_NET_RESOLVE, 0) : RB_NET_FAIL;
}

enum rb_net_result rb_net_connected(struct rb_net *n)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (n->fd < 0)
        return rb_net_connect(n);
    if (getsockopt(n->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        n->err = err;
        return rb_net_connect(n);
    }
    /* every caller sends small requests and waits for the answer: Nagle
     * would hold each one for a delayed ACK (libssh2 leaves it on) */
    int one = 1;
    setsockopt(n->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    n->err = 0;
    return RB_NET_READY;
}

int rb_net_take(struct rb_net *n)
{
    int fd = n->fd;
    n->fd = -1;
    rb_net_close(n);
    return fd;
}

void rb_net_close(struct rb_net *n)
{
    if (n->fd == n->lookup_fd)
        n->fd = -1;
    close_fd(&n->fd);
    close_fd(&n->lookup_fd);
    if (n->lookup != NULL)
        lookup_unref(n->lookup);
    n->lookup = NULL;
    n->next = NULL;
}

const char *rb_net_kind(const struct rb_net *n)
{
    if (n->stage == RB_NET_RESOLVE)
        return "resolve";
    return n->err == ETIMEDOUT ? "timeout" : "refused";
}

const char *rb_net_reason(const struct rb_net *n)
{
    if (n->gai != 0 && n->gai != EAI_SYSTEM)
        return gai_strerror(n->gai);
    if (n->err != 0)
        return strerror(n->err);
    if (n->stage == RB_NET_RESOLVE)
        return "the name has no usable address";
    return "unknown error";
}

void rb_net_set(lua_State *L, const char *key, const char *value)
{
    if (value != NULL) {
        lua_pushstring(L, value);
        lua_setfield(L, -2, key);
    }
}

void rb_net_push_facts(lua_State *L, const char *kind, const char *stage)
{
    lua_createtable(L, 0, 10);
    rb_net_set(L, "kind", kind);
    rb_net_set(L, "stage", stage);
}

void rb_net_push_failure(lua_State *L, const struct rb_net *n)
{
    rb_net_push_facts(L, rb_net_kind(n), n->stage == RB_NET_RESOLVE ? "resolve" : "connect");
    if (n->err != 0)
        rb_net_set(L, "errno", strerrorname_np(n->err));
    rb_net_set(L, "reason", rb_net_reason(n));
    rb_net_set(L, "host", n->host);
    lua_pushinteger(L, atoi(n->port));
    lua_setfield(L, -2, "port");
    rb_net_set(L, "addr", n->addr[0] ? n->addr : NULL);
    lua_pushinteger(L, n->tried);
    lua_setfield(L, -2, "tried");
}

static const char *wake_name(enum rb_wake w)
{
    switch (w) {
    case RB_WAKE_INTERRUPT: return "interrupt";
    case RB_WAKE_CANCEL: return "cancel";
    default: return "timeout";
    }
}

void rb_net_push_wake(lua_State *L, enum rb_wake w, const char *stage, double timeout)
{
    rb_net_push_facts(L, "timeout", stage);
    rb_net_set(L, "wake", wake_name(w));
    lua_pushnumber(L, timeout);
    lua_setfield(L, -2, "timeout");
}
