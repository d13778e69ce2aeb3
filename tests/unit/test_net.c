/*
 * Unit tests for src/net.c, the lookup and connect of lib_redis.c and
 * lib_ssh.c: a lookup that failed with EAI_SYSTEM keeps the errno that
 * says why (ssh's copy dropped it), and against the real network on
 * loopback: a name that does not resolve, a port that refuses, a numeric
 * IPv4 and IPv6 address that connects, and the facts Lua is handed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "runbook/net.h"

#define CHECK(cond, ...) do { if (!(cond)) fail_msg(__VA_ARGS__); } while (0)

/* A TCP socket bound to a free loopback port; listening when asked.  A
 * bound socket that does not listen refuses connections to its port,
 * and holding it keeps anyone else from taking the port meanwhile. */
static int bound(int family, int listening, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    CHECK(bind(fd, (struct sockaddr *)&ss, len) == 0, "bind: %s", strerror(errno));
    CHECK(!listening || listen(fd, 4) == 0, "listen: %s", strerror(errno));
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0, "getsockname: %s", strerror(errno));
    *port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* Wait for n->fd as the loop would (10 s at most: a test's own bound). */
static void wait_fd(const struct rb_net *n, short events)
{
    struct pollfd p = { .fd = n->fd, .events = events, .revents = 0 };
    CHECK(n->fd >= 0, "expected an fd to wait on");
    CHECK(poll(&p, 1, 10000) == 1, "fd %d not ready within 10 s", n->fd);
}

/* start, then the connect loop through to its end, as a module drives it. */
static enum rb_net_result drive(struct rb_net *n, const char *host, int port)
{
    enum rb_net_result r = rb_net_start(n, host, port);
    if (r == RB_NET_WAIT) {
        wait_fd(n, POLLIN);
        r = rb_net_resolved(n);
    }
    if (r != RB_NET_READY)
        return r;
    for (r = rb_net_connect(n); r == RB_NET_WAIT; r = rb_net_connected(n))
        wait_fd(n, POLLOUT);
    return r;
}

static void eai_system_keeps_the_lookups_errno(void **state)
{
    (void)state;
    struct rb_net n;
    rb_net_init(&n);
    rb_net_lookup_failed(&n, EAI_SYSTEM, EMFILE);
    CHECK(strcmp(rb_net_kind(&n), "resolve") == 0, "expected kind resolve, got %s", rb_net_kind(&n));
    CHECK(n.err == EMFILE, "expected errno EMFILE kept, got %d", n.err);
    CHECK(strcmp(rb_net_reason(&n), strerror(EMFILE)) == 0,
          "expected the reason \"%s\", got \"%s\"", strerror(EMFILE), rb_net_reason(&n));

    rb_net_lookup_failed(&n, EAI_NONAME, EMFILE);
    CHECK(n.err == 0, "an EAI_NONAME failure has no errno, got %d", n.err);
    CHECK(strcmp(rb_net_reason(&n), gai_strerror(EAI_NONAME)) == 0,
          "expected getaddrinfo's reason, got \"%s\"", rb_net_reason(&n));
}

static void unresolvable_name_fails_at_resolve(void **state)
{
    (void)state;
    struct rb_net n;
    rb_net_init(&n);
    enum rb_net_result r = drive(&n, "no-such-host.invalid", 6379);
    CHECK(r == RB_NET_FAIL, "expected the lookup to fail, got %d", r);
    CHECK(strcmp(rb_net_kind(&n), "resolve") == 0, "expected kind resolve, got %s", rb_net_kind(&n));
    CHECK(n.gai != 0, "expected getaddrinfo's code");
    CHECK(n.tried == 0, "no address may be tried, %d were", n.tried);
    rb_net_close(&n);
}

static void refused_port_fails_at_connect_with_its_errno(void **state)
{
    (void)state;
    int port, holder = bound(AF_INET, 0, &port);
    struct rb_net n;
    rb_net_init(&n);
    enum rb_net_result r = drive(&n, "127.0.0.1", port);
    CHECK(r == RB_NET_FAIL, "expected the connect to fail, got %d", r);
    CHECK(strcmp(rb_net_kind(&n), "refused") == 0, "expected kind refused, got %s", rb_net_kind(&n));
    CHECK(n.err == ECONNREFUSED, "expected ECONNREFUSED, got %s", strerror(n.err));
    CHECK(strcmp(n.addr, "127.0.0.1") == 0 && n.tried == 1, "expected one try of 127.0.0.1, got "
          "%d, last %s", n.tried, n.addr);
    CHECK(n.fd < 0, "a failed connect must leave no socket open");
    rb_net_close(&n);
    close(holder);
}

static void numeric_addresses_connect(void **state)
{
    (void)state;
    static const int families[] = { AF_INET, AF_INET6 };
    static const char *const hosts[] = { "127.0.0.1", "::1" };
    static const char *const shown[] = { "127.0.0.1", "[::1]" };
    for (int i = 0; i < 2; i++) {
        int port, srv = bound(families[i], 1, &port);
        struct rb_net n;
        rb_net_init(&n);
        CHECK(rb_net_start(&n, hosts[i], port) == RB_NET_READY,
              "a numeric address %s needs no lookup", hosts[i]);
        CHECK(drive(&n, hosts[i], port) == RB_NET_READY, "expected %s:%d to connect: %s",
              hosts[i], port, rb_net_reason(&n));
        CHECK(strcmp(n.addr, shown[i]) == 0, "expected the address shown as %s, got %s",
              shown[i], n.addr);
        int fd = rb_net_take(&n);
        CHECK(fd >= 0 && n.fd < 0, "rb_net_take hands the socket over");
        int peer = accept(srv, NULL, NULL);
        CHECK(peer >= 0, "the server saw no connection: %s", strerror(errno));
        close(peer);
        close(fd);
        rb_net_close(&n);
        close(srv);
    }
}

static const char *field(lua_State *L, const char *key)
{
    lua_getfield(L, -1, key);
    const char *v = lua_tostring(L, -1);
    lua_pop(L, 1);              /* the string stays in the table */
    return v ? v : "(nil)";
}

static void failure_facts_reach_lua(void **state)
{
    (void)state;
    int port, holder = bound(AF_INET, 0, &port);
    struct rb_net n;
    rb_net_init(&n);
    CHECK(drive(&n, "127.0.0.1", port) == RB_NET_FAIL, "expected a refused connect");
    lua_State *L = luaL_newstate();
    rb_net_push_failure(L, &n);
    char want_port[16];
    snprintf(want_port, sizeof want_port, "%d", port);
    CHECK(strcmp(field(L, "kind"), "refused") == 0, "kind: %s", field(L, "kind"));
    CHECK(strcmp(field(L, "stage"), "connect") == 0, "stage: %s", field(L, "stage"));
    CHECK(strcmp(field(L, "errno"), "ECONNREFUSED") == 0, "errno: %s", field(L, "errno"));
    CHECK(strcmp(field(L, "reason"), strerror(ECONNREFUSED)) == 0, "reason: %s", field(L, "reason"));
    CHECK(strcmp(field(L, "host"), "127.0.0.1") == 0, "host: %s", field(L, "host"));
    CHECK(strcmp(field(L, "port"), want_port) == 0, "port: %s", field(L, "port"));
    CHECK(strcmp(field(L, "addr"), "127.0.0.1") == 0, "addr: %s", field(L, "addr"));

    rb_net_lookup_failed(&n, EAI_SYSTEM, EMFILE);
    rb_net_push_failure(L, &n);
    CHECK(strcmp(field(L, "kind"), "resolve") == 0, "kind: %s", field(L, "kind"));
    CHECK(strcmp(field(L, "errno"), "EMFILE") == 0, "errno of EAI_SYSTEM: %s", field(L, "errno"));
    lua_close(L);
    rb_net_close(&n);
    close(holder);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(eai_system_keeps_the_lookups_errno),
        cmocka_unit_test(unresolvable_name_fails_at_resolve),
        cmocka_unit_test(refused_port_fails_at_connect_with_its_errno),
        cmocka_unit_test(numeric_addresses_connect),
        cmocka_unit_test(failure_facts_reach_lua),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
