/*
 * lib_ssh.c: SSH sessions on the event loop (libssh2 1.10, non-blocking).
 *
 *   ssh.connect{host=, port=, user=, keys={path...}, passphrase=, agent=,
 *               known_hosts=, accept_new=, save_new=, timeout=}
 *                                    -> session, info | nil, facts
 *       resolves the name and connects TCP (src/net.c), runs the SSH
 *       handshake, checks the host key against known_hosts and
 *       authenticates with the key files, then the agent.  One deadline
 *       (timeout, seconds) covers all of it.  A host with keys in
 *       known_hosts is offered only their types in the handshake and must
 *       present one of them; accept_new trusts a key only for a host with
 *       no entry at all; an @revoked key is refused for every host.
 *   session:exec(cmd, timeout, stdin, on_output) -> {code, stdout, stderr,
 *                                   signal, truncated, duration} | nil, facts
 *       one channel: exec, feed stdin then EOF, collect both streams, wait
 *       for the server's close and read the exit status.
 *   session:close()
 *
 * Every libssh2 call that answers LIBSSH2_ERROR_EAGAIN is retried after
 * rb_loop_wait on the socket, for the directions libssh2 says it blocked
 * on.  One verb runs on a session at a time (libssh2 keeps per-session
 * state for a channel being opened).  Defaults, which keys to try, dry
 * run, check=, the transcript and fan-out are the stdlib's business
 * (stdlib/runbook/prim/ssh.lua).
 *
 * A failure is facts, not prose: {kind = "resolve" | "refused" | "timeout" |
 * "protocol" | "hostkey" | "auth" | "closed" | "server", stage, problem,
 * who, target, host, port, addr, ...}, worded by stdlib/runbook/networds.lua.
 * Misuse (a busy or closed session) still raises.
 *
 * An exec that ends early (timeout, Ctrl-C, the step's limit) sends the
 * channel's close and does not wait: libssh2 frees a channel only once the
 * server confirms the close, and sshd does that only when the remote
 * command exits.  Such a channel is parked and freed by a later exec; when
 * the session closes first, its wire is cut (send and receive callbacks
 * that fail) so that libssh2_session_free frees it without waiting.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <libssh2.h>
#include <openssl/evp.h>

#include "runbook/host.h"
#include "runbook/loop.h"
#include "runbook/net.h"

#define SESSION_MT "runbook.ssh.session"
#define OUTPUT_CAP (32u << 20)      /* keep at most 32 MiB of each stream */
#define MAX_PARKED 16
#define WHO_MAX 320

enum phase { P_RESOLVE, P_TCP, P_HANDSHAKE, P_HOSTKEY, P_METHODS, P_KEYS, P_AGENT, P_READY };
enum xphase { X_OPEN, X_EXEC, X_IO, X_CLOSE, X_DONE };
/* a phase moved on, must wait for the socket, or failed (facts on the stack) */
enum { STEP_ON, STEP_WAIT, STEP_FAIL };

struct exec {
    enum xphase phase;
    LIBSSH2_CHANNEL *ch;
    size_t in_off;
    int eof_sent;
    size_t out_len, err_len;
    int out_n, err_n;           /* chunks kept in the stack's tables */
    int truncated;
    int dirs;                   /* what libssh2 blocked on in this round */
    int code;
    char signal[32];
    double started, deadline, timeout;
    char buf[16384];            /* here, not on the C stack: waits may recurse */
};

struct sess {
    LIBSSH2_SESSION *s;         /* NULL when closed */
    LIBSSH2_AGENT *agent;
    struct libssh2_agent_publickey *identity;
    LIBSSH2_CHANNEL *parked[MAX_PARKED];
    int nparked;
    int fd;
    int busy;
    enum phase phase;
    struct rb_net net;          /* the lookup and TCP connect */
    int port;
    int key_i;
    double deadline, timeout;
    char methods[128];
    int ntried;                 /* entries in the S_TRIED list */
    char auth[300];             /* what authenticated */
    char fingerprint[64];
    const char *key_type;
    unsigned on_file;           /* bit i: known_hosts holds a key_types[i] key for the host */
    int new_key, saved;
    char host[256];
    char target[WHO_MAX];       /* "user@host:port" */
    char who[WHO_MAX + 8];      /* "ssh user@host:port" */
    struct exec x;
};

/* Stack slots of ssh.connect and session:exec. */
enum { S_SPEC = 1, S_SESS, S_TRIED };
enum { E_SESS = 1, E_CMD, E_TIMEOUT, E_STDIN, E_CALLBACK, E_OUT, E_ERR };

/* method: the host key algorithm to negotiate when known_hosts holds a
 * key of this type (libssh2 1.10 verifies RSA host keys only as ssh-rsa). */
static const struct key_type {
    int hostkey, known;
    const char *name, *file, *method;
} key_types[] = {
    { LIBSSH2_HOSTKEY_TYPE_RSA, LIBSSH2_KNOWNHOST_KEY_SSHRSA, "RSA", "rsa", "ssh-rsa" },
    { LIBSSH2_HOSTKEY_TYPE_DSS, LIBSSH2_KNOWNHOST_KEY_SSHDSS, "DSA", "dsa", "ssh-dss" },
    { LIBSSH2_HOSTKEY_TYPE_ECDSA_256, LIBSSH2_KNOWNHOST_KEY_ECDSA_256, "ECDSA", "ecdsa",
      "ecdsa-sha2-nistp256" },
    { LIBSSH2_HOSTKEY_TYPE_ECDSA_384, LIBSSH2_KNOWNHOST_KEY_ECDSA_384, "ECDSA", "ecdsa",
      "ecdsa-sha2-nistp384" },
    { LIBSSH2_HOSTKEY_TYPE_ECDSA_521, LIBSSH2_KNOWNHOST_KEY_ECDSA_521, "ECDSA", "ecdsa",
      "ecdsa-sha2-nistp521" },
    { LIBSSH2_HOSTKEY_TYPE_ED25519, LIBSSH2_KNOWNHOST_KEY_ED25519, "ED25519", "ed25519",
      "ssh-ed25519" },
};
#define N_KEY_TYPES (sizeof key_types / sizeof key_types[0])

static const struct key_type *key_type_of(int hostkey, int known)
{
    for (size_t i = 0; i < N_KEY_TYPES; i++)
        if (key_types[i].hostkey == hostkey || key_types[i].known == known)
            return &key_types[i];
    return NULL;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static const char *last_error(LIBSSH2_SESSION *s)
{
    char *msg = NULL;
    if (s == NULL || libssh2_session_last_error(s, &msg, NULL, 0) == 0 || msg == NULL)
        return "unknown error";
    return msg;
}

/* ---- closing ------------------------------------------------------------ */

static ssize_t cut_send(libssh2_socket_t fd, const void *buf, size_t len, int flags,
                        void **abstract)
{
    (void)fd, (void)buf, (void)flags, (void)abstract;
    return (ssize_t)len;
}

static ssize_t cut_recv(libssh2_socket_t fd, void *buf, size_t len, int flags, void **abstract)
{
    (void)fd, (void)buf, (void)len, (void)flags, (void)abstract;
    return -ECONNRESET;
}

/* After this, every send "succeeds" and every read fails, so libssh2 can
 * close and free channels without waiting for a server that may never
 * answer (a remote command still running holds its channel's close). */
static void cut_wire(LIBSSH2_SESSION *s)
{
    libssh2_session_callback_set(s, LIBSSH2_CALLBACK_SEND, (void *)cut_send);
    libssh2_session_callback_set(s, LIBSSH2_CALLBACK_RECV, (void *)cut_recv);
}

/* Close everything; safe to call twice (__gc after __close or close()). */
static void sess_close(struct sess *x)
{
    LIBSSH2_SESSION *s = x->s;
    x->s = NULL;
    x->busy = 0;
    if (s != NULL) {
        if (x->agent != NULL) {
            libssh2_agent_disconnect(x->agent);
            libssh2_agent_free(x->agent);
            x->agent = NULL;
        }
        if (x->phase == P_READY)
            libssh2_session_disconnect(s, "closed by runbook");     /* best effort */
        cut_wire(s);
        for (int i = 0; i < 4 && libssh2_session_free(s) == LIBSSH2_ERROR_EAGAIN; i++)
            ;
        x->x.ch = NULL;
        x->nparked = 0;
    }
    close_fd(&x->fd);
    rb_net_close(&x->net);
}

static int l_gc(lua_State *L)
{
    sess_close(luaL_checkudata(L, 1, SESSION_MT));
    return 0;
}

static int l_close(lua_State *L)
{
    struct sess *x = luaL_checkudata(L, 1, SESSION_MT);
    if (x->busy)
        return luaL_error(L, "%s: cannot close the session while a command runs on it", x->who);
    sess_close(x);
    return 0;
}

/* Push the facts of a connect failure: {kind, stage, problem, who,
 * target, host, port}; the caller adds its own and returns STEP_FAIL. */
static void push_fail(lua_State *L, struct sess *x, const char *kind, const char *stage,
                      const char *problem)
{
    rb_net_push_facts(L, kind, stage);
    rb_net_set(L, "problem", problem);
    rb_net_set(L, "who", x->who);
    rb_net_set(L, "target", x->target);
    rb_net_set(L, "host", x->host);
    lua_pushinteger(L, x->port);
    lua_setfield(L, -2, "port");
}

static int fail_reason(lua_State *L, struct sess *x, const char *kind, const char *stage,
                       const char *problem, const char *reason)
{
    push_fail(L, x, kind, stage, problem);
    rb_net_set(L, "reason", reason);
    return STEP_FAIL;
}

/* ---- connecting: TCP ---------------------------------------------------- */

/* What to wait for when libssh2 answered EAGAIN. */
static int want_session(struct sess *x, struct pollfd *want)
{
    int dirs = libssh2_session_block_directions(x->s);
    want->fd = x->fd;
    want->events = 0;
    if (dirs & LIBSSH2_SESSION_BLOCK_INBOUND)
        want->events |= POLLIN;
    if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)
        want->events |= POLLOUT;
    if (want->events == 0)
        want->events = POLLIN;
    return STEP_WAIT;
}

/* The facts of a failed lookup or TCP connect (src/net.c's), named. */
static int net_failed(lua_State *L, struct sess *x)
{
    rb_net_push_failure(L, &x->net);
    rb_net_set(L, "who", x->who);
    rb_net_set(L, "target", x->target);
    return STEP_FAIL;
}

/* Where src/net.c's answer leads: the next phase, a wait, or a failure. */
static int net_step(lua_State *L, struct sess *x, enum rb_net_result r, enum phase next,
                    short events, struct pollfd *want)
{
    if (r == RB_NET_FAIL)
        return net_failed(L, x);
    if (r == RB_NET_READY) {
        x->phase = next;
        return STEP_ON;
    }
    want->fd = x->net.fd;
    want->events = events;
    return STEP_WAIT;
}

static int ph_resolve(lua_State *L, struct sess *x, struct pollfd *want)
{
    enum rb_net_result r = x->net.lookup == NULL ? rb_net_start(&x->net, x->host, x->port)
                                                 : rb_net_resolved(&x->net);
    return net_step(L, x, r, P_TCP, POLLIN, want);
}

static int prefer_known_types(lua_State *L, struct sess *x);
static void types_text(unsigned bits, char *out, size_t len);
static const char *spec_known_hosts(lua_State *L);

/* The socket is connected: hand it to a new libssh2 session. */
static int tcp_connected(lua_State *L, struct sess *x)
{
    /* src/net.c set TCP_NODELAY: libssh2 leaves Nagle on, and each exec
     * would wait for delayed ACKs (52 ms an exec instead of 9 on loopback). */
    x->fd = rb_net_take(&x->net);
    x->s = libssh2_session_init_ex(NULL, NULL, NULL, x);
    if (x->s == NULL)
        return luaL_error(L, "%s: out of memory", x->who);
    libssh2_session_set_blocking(x->s, 0);
    if (prefer_known_types(L, x) == STEP_FAIL)
        return STEP_FAIL;
    x->phase = P_HANDSHAKE;
    return STEP_ON;
}

static int ph_tcp(lua_State *L, struct sess *x, struct pollfd *want)
{
    enum rb_net_result r = x->net.fd < 0 ? rb_net_connect(&x->net) : rb_net_connected(&x->net);
    if (r == RB_NET_READY)
        return tcp_connected(L, x);
    return net_step(L, x, r, P_TCP, POLLOUT, want);
}

/* The handshake failed.  With types set, only the key types on file were
 * offered: most likely the server has none of them (or, for RSA, signs
 * only with SHA-2, which libssh2 1.10 cannot check). */
static int handshake_failed(lua_State *L, struct sess *x)
{
    fail_reason(L, x, "protocol", "handshake", NULL, last_error(x->s));
    rb_net_set(L, "addr", x->net.addr);
    if (x->on_file != 0) {
        char types[64];
        types_text(x->on_file, types, sizeof types);
        rb_net_set(L, "types", types);
        rb_net_set(L, "known_hosts", spec_known_hosts(L));
        lua_pushboolean(L, (x->on_file & 1u) != 0);    /* key_types[0] is RSA */
        lua_setfield(L, -2, "rsa_on_file");
    }
    return STEP_FAIL;
}

static int ph_handshake(lua_State *L, struct sess *x, struct pollfd *want)
{
    int rc = libssh2_session_handshake(x->s, x->fd);
    if (rc == LIBSSH2_ERROR_EAGAIN)
        return want_session(x, want);
    if (rc != 0)
        return handshake_failed(L, x);
    x->phase = P_HOSTKEY;
    return STEP_ON;
}

/* ---- connecting: the host key ------------------------------------------- */

static void base64(const unsigned char *in, size_t len, char *out, size_t outlen)
{
    unsigned char b64[128];
    if (len > 64) {
        snprintf(out, outlen, "?");
        return;
    }
    int n = EVP_EncodeBlock(b64, in, (int)len);
    while (n > 0 && b64[n - 1] == '=')
        n--;
    snprintf(out, outlen, "%.*s", n, (const char *)b64);
}

/* "SHA256:..." of a key blob, as ssh-keygen -l prints it. */
static void fingerprint(const void *blob, size_t len, char *out, size_t outlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char b64[48];
    if (EVP_Digest(blob, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        snprintf(out, outlen, "SHA256:?");
        return;
    }
    base64(md, mdlen, b64, sizeof b64);
    snprintf(out, outlen, "SHA256:%s", b64);
}

/* The fingerprint of a key stored in known_hosts (base64 of the blob). */
static void fingerprint_b64(const char *text, char *out, size_t outlen)
{
    size_t n = strlen(text);
    unsigned char *blob = malloc(n + 4);
    int len = blob ? EVP_DecodeBlock(blob, (const unsigned char *)text, (int)n) : -1;
    if (len < 0) {
        snprintf(out, outlen, "(unreadable key)");
        free(blob);
        return;
    }
    for (size_t i = n; i > 0 && text[i - 1] == '='; i--)
        len--;              /* EVP_DecodeBlock counts the padding as bytes */
    fingerprint(blob, (size_t)len, out, outlen);
    free(blob);
}

/* Reading known_hosts one entry at a time: blank lines and comments are
 * skipped, line ends cut, the line number kept for messages. */
struct kh_reader {
    FILE *f;
    char *line;
    size_t cap;
    int no;
};

static const char *kh_next(struct kh_reader *r)
{
    ssize_t n;
    while ((n = getline(&r->line, &r->cap, r->f)) > 0) {
        r->no++;
        while (n > 0 && (r->line[n - 1] == '\n' || r->line[n - 1] == '\r'))
            r->line[--n] = '\0';
        const char *p = r->line + strspn(r->line, " \t");
        if (*p != '\0' && *p != '#')
            return p;
    }
    return NULL;
}

/* Load the plain entries of known_hosts.  Lines with a marker
 * (@revoked, @cert-authority) are scan_known's business, lines libssh2
 * cannot parse (security-key types) are skipped instead of refusing the
 * file.  A missing file is an empty one.  Returns 0 or an errno. */
static int load_known_hosts(LIBSSH2_KNOWNHOSTS *kh, const char *path)
{
    struct kh_reader r = { fopen(path, "re"), NULL, 0, 0 };
    if (r.f == NULL)
        return errno == ENOENT ? 0 : errno;
    const char *p;
    while ((p = kh_next(&r)) != NULL)
        if (*p != '@')
            libssh2_knownhost_readline(kh, p, strlen(p), LIBSSH2_KNOWNHOST_FILE_OPENSSH);
    free(r.line);
    fclose(r.f);
    return 0;
}

/* The fields after "@revoked": host patterns, key type, key.  1 when the
 * key is b64key. */
static int revoked_is(const char *rest, const char *b64key)
{
    const char *p = rest;
    for (int field = 0; field < 2; field++) {
        p += strspn(p, " \t");
        p += strcspn(p, " \t");
    }
    p += strspn(p, " \t");
    size_t n = strcspn(p, " \t");
    return n > 0 && n == strlen(b64key) && memcmp(p, b64key, n) == 0;
}

/* The key type bit of one plain known_hosts line when it names this host,
 * else 0.  Each line gets a collection of its own: libssh2 answers only the
 * first entry naming a host, and matches hashed names and [host]:port. */
static unsigned line_types(struct sess *x, const char *line)
{
    LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(x->s);
    struct libssh2_knownhost *found = NULL;
    unsigned bits = 0;
    if (kh == NULL)
        return 0;
    /* key type 0: any type matches, so a host entry answers MATCH or MISMATCH */
    if (libssh2_knownhost_readline(kh, line, strlen(line), LIBSSH2_KNOWNHOST_FILE_OPENSSH) == 0 &&
        libssh2_knownhost_checkp(kh, x->host, x->port, "", 1, LIBSSH2_KNOWNHOST_TYPE_PLAIN |
                                 LIBSSH2_KNOWNHOST_KEYENC_RAW, &found) !=
        LIBSSH2_KNOWNHOST_CHECK_NOTFOUND && found != NULL) {
        const struct key_type *t = key_type_of(-1, found->typemask & LIBSSH2_KNOWNHOST_KEY_MASK);
        if (t != NULL)
            bits = 1u << (t - key_types);
    }
    libssh2_knownhost_free(kh);
    return bits;
}

/* Without b64key: the types of this host's keys in known_hosts into
 * x->on_file (before the handshake).  With it: the line of an @revoked
 * entry for that key into *revoked (0: none), whatever host the entry
 * names: a revoked key is trusted for no host.  Returns 0 or an errno. */
static int scan_known(struct sess *x, const char *path, const char *b64key, int *revoked)
{
    struct kh_reader r = { fopen(path, "re"), NULL, 0, 0 };
    if (b64key == NULL)
        x->on_file = 0;
    *revoked = 0;
    if (r.f == NULL)
        return errno == ENOENT ? 0 : errno;
    const char *p;
    while ((p = kh_next(&r)) != NULL) {
        if (*p != '@' && b64key == NULL)
            x->on_file |= line_types(x, p);
        else if (b64key != NULL && *revoked == 0 && strncmp(p, "@revoked", 8) == 0 &&
                 (p[8] == ' ' || p[8] == '\t') && revoked_is(p + 8, b64key))
            *revoked = r.no;
    }
    free(r.line);
    fclose(r.f);
    return 0;
}

/* "RSA, ED25519": the key types of a bit set of key_types. */
static void types_text(unsigned bits, char *out, size_t len)
{
    const char *last = NULL;
    out[0] = '\0';
    for (size_t i = 0; i < N_KEY_TYPES; i++) {
        if (!(bits & (1u << i)) || (last != NULL && strcmp(last, key_types[i].name) == 0))
            continue;
        size_t n = strlen(out);
        snprintf(out + n, len - n, "%s%s", n ? ", " : "", key_types[i].name);
        last = key_types[i].name;
    }
}

static const char *spec_known_hosts(lua_State *L)
{
    lua_getfield(L, S_SPEC, "known_hosts");
    const char *path = lua_tostring(L, -1);
    lua_pop(L, 1);              /* the string stays in the spec */
    return path;
}

/* The facts of a host key refused or not checked: {kind = "hostkey",
 * problem, key_type, fingerprint, known_hosts}; the caller adds more. */
static int key_fail(lua_State *L, struct sess *x, const char *problem, const char *path)
{
    push_fail(L, x, "hostkey", "hostkey", problem);
    rb_net_set(L, "key_type", x->key_type);
    rb_net_set(L, "fingerprint", x->fingerprint[0] ? x->fingerprint : NULL);
    rb_net_set(L, "known_hosts", path);
    return STEP_FAIL;
}

/* Before the handshake: when known_hosts holds keys for this host, offer
 * the server only their types, so that the key it presents can be checked
 * against one on file instead of being taken for a new one. */
static int prefer_known_types(lua_State *L, struct sess *x)
{
    const char *path = spec_known_hosts(L);
    int revoked;
    int e = scan_known(x, path, NULL, &revoked);
    if (e != 0) {
        key_fail(L, x, "unreadable", path);
        rb_net_set(L, "reason", strerror(e));
        return STEP_FAIL;
    }
    if (x->on_file == 0)
        return STEP_ON;
    char pref[256] = "";
    for (size_t i = 0; i < N_KEY_TYPES; i++) {
        size_t n = strlen(pref);
        if (x->on_file & (1u << i))
            snprintf(pref + n, sizeof pref - n, "%s%s", n ? "," : "", key_types[i].method);
    }
    if (libssh2_session_method_pref(x->s, LIBSSH2_METHOD_HOSTKEY, pref) != 0) {
        key_fail(L, x, "prefer", path);
        rb_net_set(L, "types", pref);
        rb_net_set(L, "reason", last_error(x->s));
        return STEP_FAIL;
    }
    return STEP_ON;
}

/* The line of path holding this base64 key, 0 when not found. */
static int line_of(const char *path, const char *key)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int no = 0, found = 0;
    while (!found && getline(&line, &cap, f) > 0) {
        no++;
        found = strstr(line, key) != NULL;
    }
    free(line);
    fclose(f);
    return found ? no : 0;
}

/* How known_hosts names host:port ("[host]:port" unless port 22). */
static void known_name(const struct sess *x, char *out, size_t len)
{
    snprintf(out, len, x->port == 22 ? "%s" : "[%s]:%d", x->host, x->port);
}

/* Append one entry for this host's key; 0 or an errno. */
static int save_key(struct sess *x, LIBSSH2_KNOWNHOSTS *kh, const char *path,
                    const char *key, size_t len, int known_type)
{
    char name[300], line[8192];
    struct libssh2_knownhost *entry = NULL;
    size_t outlen = 0;
    known_name(x, name, sizeof name);
    if (libssh2_knownhost_addc(kh, name, NULL, key, len, NULL, 0,
                               LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
                               known_type, &entry) != 0 ||
        libssh2_knownhost_writeline(kh, entry, line, sizeof line, &outlen,
                                    LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0)
        return EINVAL;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        mkdir(dir, 0700);       /* ~/.ssh may not exist yet, as with ssh(1) */
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    struct stat st;
    char last = '\n';
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        int rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (rfd >= 0 && pread(rfd, &last, 1, st.st_size - 1) != 1)
            last = '\n';
        close_fd(&rfd);
    }
    int ok = (last == '\n' || write(fd, "\n", 1) == 1) &&
             write(fd, line, outlen) == (ssize_t)outlen;
    int e = ok ? 0 : errno;
    close(fd);
    return e;
}

static int key_changed(lua_State *L, struct sess *x, const char *path,
                       const struct libssh2_knownhost *old)
{
    char oldfp[64], name[300];
    const struct key_type *t = key_type_of(-1, old->typemask & LIBSSH2_KNOWNHOST_KEY_MASK);
    fingerprint_b64(old->key, oldfp, sizeof oldfp);
    known_name(x, name, sizeof name);
    int line = line_of(path, old->key);
    key_fail(L, x, "changed", path);
    rb_net_set(L, "old_key_type", t ? t->name : NULL);
    rb_net_set(L, "old_fingerprint", oldfp);
    rb_net_set(L, "known_name", name);
    if (line > 0) {
        lua_pushinteger(L, line);
        lua_setfield(L, -2, "line");
    }
    return STEP_FAIL;
}

static int key_revoked(lua_State *L, struct sess *x, const char *path, int line)
{
    key_fail(L, x, "revoked", path);
    lua_pushinteger(L, line);
    lua_setfield(L, -2, "line");
    return STEP_FAIL;
}

/* known_hosts holds keys for the host, none of the presented key's type:
 * the server chose a type it was not offered, or a type runbook cannot ask
 * for.  Never added: trusting it would let anyone with any key in. */
static int key_not_on_file(lua_State *L, struct sess *x, const char *path)
{
    char types[64];
    types_text(x->on_file, types, sizeof types);
    key_fail(L, x, "not_on_file", path);
    rb_net_set(L, "types", types);
    return STEP_FAIL;
}

/* The base64 text of a key blob, as known_hosts writes it (malloc'd). */
static char *key_b64(const char *key, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)key, (int)len);
    return out;
}

/* A key never seen for a host with no entry at all: accept_new= and
 * save_new= say whether to trust it and add it.  Returns a CHECK_ code. */
static int key_new(lua_State *L, struct sess *x, LIBSSH2_KNOWNHOSTS *kh, const char *path,
                   const char *key, size_t len, int known_type, int *e)
{
    lua_getfield(L, S_SPEC, "accept_new");
    lua_getfield(L, S_SPEC, "save_new");
    int accept = lua_toboolean(L, -2), save = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 2);
    if (!accept)
        return LIBSSH2_KNOWNHOST_CHECK_NOTFOUND;
    x->new_key = 1;
    *e = save ? save_key(x, kh, path, key, len, known_type) : 0;
    x->saved = save && *e == 0;
    return *e ? LIBSSH2_KNOWNHOST_CHECK_FAILURE : LIBSSH2_KNOWNHOST_CHECK_MATCH;
}

/* Check the server's key against known_hosts: a revoked key is refused, a
 * host with any key on file must match one, and only a host with no entry
 * at all may be trusted on first use (accept_new=). */
static int ph_hostkey(lua_State *L, struct sess *x)
{
    size_t len = 0;
    int type = 0, revoked = 0;
    const char *key = libssh2_session_hostkey(x->s, &len, &type);
    const struct key_type *t = key_type_of(type, -1);
    if (key == NULL || t == NULL)
        return fail_reason(L, x, "hostkey", "hostkey", "untyped", NULL);
    fingerprint(key, len, x->fingerprint, sizeof x->fingerprint);
    x->key_type = t->name;
    const char *path = spec_known_hosts(L);
    char *b64 = key_b64(key, len);
    int e = b64 ? scan_known(x, path, b64, &revoked) : ENOMEM;
    free(b64);
    if (e == 0 && revoked > 0)
        return key_revoked(L, x, path, revoked);
    LIBSSH2_KNOWNHOSTS *kh = e ? NULL : libssh2_knownhost_init(x->s);
    e = e ? e : kh ? load_known_hosts(kh, path) : ENOMEM;
    struct libssh2_knownhost *found = NULL;
    int check = e ? LIBSSH2_KNOWNHOST_CHECK_FAILURE :
        libssh2_knownhost_checkp(kh, x->host, x->port, key, len, LIBSSH2_KNOWNHOST_TYPE_PLAIN |
                                 LIBSSH2_KNOWNHOST_KEYENC_RAW | t->known, &found);
    if (check == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND && x->on_file == 0)
        check = key_new(L, x, kh, path, key, len, t->known, &e);
    if (check == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
        struct libssh2_knownhost old = *found;
        char oldkey[4096];
        snprintf(oldkey, sizeof oldkey, "%s", found->key);
        old.key = oldkey;
        libssh2_knownhost_free(kh);
        return key_changed(L, x, path, &old);
    }
    if (kh != NULL)
        libssh2_knownhost_free(kh);
    if (check == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND && x->on_file != 0)
        return key_not_on_file(L, x, path);
    if (check == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND) {
        key_fail(L, x, "unknown", path);
        rb_net_set(L, "key_file", t->file);
        return STEP_FAIL;
    }
    if (check != LIBSSH2_KNOWNHOST_CHECK_MATCH) {
        key_fail(L, x, x->new_key ? "unwritable" : "unreadable", path);
        rb_net_set(L, "reason", strerror(e ? e : EINVAL));
        return STEP_FAIL;
    }
    x->phase = P_METHODS;
    return STEP_ON;
}

/* ---- connecting: authentication ----------------------------------------- */

static const char *spec_user(lua_State *L)
{
    lua_getfield(L, S_SPEC, "user");
    const char *user = lua_tostring(L, -1);
    lua_pop(L, 1);              /* the string stays in the spec */
    return user;
}

/* One credential authentication tried, for the facts: {key = path | nil
 * (the agent), problem = "refused" | "unusable" | "no_agent" | "no_list"
 * | "empty" | "error", reason}. */
static void note_tried(lua_State *L, struct sess *x, const char *key, const char *problem,
                       const char *reason)
{
    lua_createtable(L, 0, 3);
    rb_net_set(L, "key", key);
    rb_net_set(L, "problem", problem);
    rb_net_set(L, "reason", reason);
    lua_rawseti(L, S_TRIED, ++x->ntried);
}

static int auth_fail(lua_State *L, struct sess *x, const char *problem, const char *reason)
{
    fail_reason(L, x, "auth", "auth", problem, reason);
    rb_net_set(L, "methods", x->methods[0] ? x->methods : NULL);
    rb_net_set(L, "user", spec_user(L));
    lua_pushvalue(L, S_TRIED);
    lua_setfield(L, -2, "tried");
    return STEP_FAIL;
}

static int auth_failed(lua_State *L, struct sess *x)
{
    return auth_fail(L, x, "failed", NULL);
}

static int ph_methods(lua_State *L, struct sess *x)
{
    const char *user = spec_user(L);
    char *list = libssh2_userauth_list(x->s, user, (unsigned)strlen(user));
    if (list == NULL) {
        if (libssh2_userauth_authenticated(x->s)) {
            snprintf(x->auth, sizeof x->auth, "none (the server asked for no credentials)");
            x->phase = P_READY;
            return STEP_ON;
        }
        if (libssh2_session_last_errno(x->s) == LIBSSH2_ERROR_EAGAIN)
            return STEP_WAIT;
        return auth_fail(L, x, "start", last_error(x->s));
    }
    snprintf(x->methods, sizeof x->methods, "%s", list);
    if (strstr(list, "publickey") == NULL)
        return auth_fail(L, x, "no_publickey", NULL);
    x->phase = P_KEYS;
    return STEP_ON;
}

/* libssh2 says UNVERIFIED when its signing callback cannot load the
 * private key, which with a .pub beside it means a wrong passphrase. */
static const char *key_problem(int rc)
{
    if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED)
        return "refused";
    if (rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED)
        return "unusable";
    return "error";
}

static int ph_keys(lua_State *L, struct sess *x)
{
    const char *user = spec_user(L);
    lua_getfield(L, S_SPEC, "passphrase");
    const char *passphrase = lua_tostring(L, -1);
    lua_getfield(L, S_SPEC, "keys");
    int n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
    for (; x->key_i < n; x->key_i++) {
        lua_rawgeti(L, -1, x->key_i + 1);
        const char *priv = lua_tostring(L, -1);
        lua_pop(L, 1);          /* the string stays in the list */
        if (priv == NULL)
            continue;
        char pub[PATH_MAX + 8];
        snprintf(pub, sizeof pub, "%s.pub", priv);
        int rc = libssh2_userauth_publickey_fromfile_ex(x->s, user, (unsigned)strlen(user),
                                                        access(pub, R_OK) == 0 ? pub : NULL,
                                                        priv, passphrase);
        if (rc == LIBSSH2_ERROR_EAGAIN) {
            lua_pop(L, 2);
            return STEP_WAIT;
        }
        if (rc == 0) {
            snprintf(x->auth, sizeof x->auth, "key %s", priv);
            x->phase = P_READY;
            lua_pop(L, 2);
            return STEP_ON;
        }
        note_tried(L, x, priv, key_problem(rc), last_error(x->s));
    }
    lua_pop(L, 2);
    lua_getfield(L, S_SPEC, "agent");
    int agent = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!agent)
        return auth_failed(L, x);
    x->phase = P_AGENT;
    return STEP_ON;
}

/* Connect to the agent and take its first identity.  The agent is a local
 * socket: these calls block, briefly. */
static int agent_start(lua_State *L, struct sess *x)
{
    x->agent = libssh2_agent_init(x->s);
    if (x->agent == NULL || libssh2_agent_connect(x->agent) != 0) {
        note_tried(L, x, NULL, "no_agent", NULL);
        return -1;
    }
    if (libssh2_agent_list_identities(x->agent) != 0) {
        note_tried(L, x, NULL, "no_list", NULL);
        return -1;
    }
    if (libssh2_agent_get_identity(x->agent, &x->identity, NULL) != 0) {
        note_tried(L, x, NULL, "empty", NULL);
        return -1;
    }
    return 0;
}

static int ph_agent(lua_State *L, struct sess *x)
{
    if (x->agent == NULL && agent_start(L, x) != 0)
        return auth_failed(L, x);
    const char *user = spec_user(L);
    int refused = 0;
    for (;;) {
        int rc = libssh2_agent_userauth(x->agent, user, x->identity);
        if (rc == LIBSSH2_ERROR_EAGAIN)
            return STEP_WAIT;
        if (rc == 0) {
            snprintf(x->auth, sizeof x->auth, "agent key %s", x->identity->comment ?
                     x->identity->comment : "");
            x->phase = P_READY;
            return STEP_ON;
        }
        refused++;
        struct libssh2_agent_publickey *prev = x->identity;
        if (libssh2_agent_get_identity(x->agent, &x->identity, prev) != 0) {
            note_tried(L, x, NULL, "refused", NULL);
            return auth_failed(L, x);
        }
    }
}

/* ---- connecting: the state machine -------------------------------------- */

static int connect_step(lua_State *L, struct sess *x, struct pollfd *want)
{
    int r;
    switch (x->phase) {
    case P_RESOLVE: return ph_resolve(L, x, want);
    case P_TCP: return ph_tcp(L, x, want);
    case P_HANDSHAKE: return ph_handshake(L, x, want);
    case P_HOSTKEY: return ph_hostkey(L, x);
    case P_METHODS: r = ph_methods(L, x); break;
    case P_KEYS: r = ph_keys(L, x); break;
    case P_AGENT: r = ph_agent(L, x); break;
    default: return STEP_ON;
    }
    return r == STEP_WAIT ? want_session(x, want) : r;
}

/* The deadline passed, Ctrl-C, or the step's limit: the facts say where
 * it stuck. */
static int connect_woke(lua_State *L, struct sess *x, enum rb_wake w)
{
    static const char *const stage[] = {
        [P_RESOLVE] = "resolve", [P_TCP] = "connect", [P_HANDSHAKE] = "handshake",
        [P_HOSTKEY] = "hostkey", [P_METHODS] = "auth", [P_KEYS] = "auth",
        [P_AGENT] = "agent", [P_READY] = "connect",
    };
    rb_net_push_wake(L, w, stage[x->phase], x->timeout);
    rb_net_set(L, "who", x->who);
    rb_net_set(L, "target", x->target);
    rb_net_set(L, "host", x->host);
    return STEP_FAIL;
}

/* nil, facts (on top of the stack), the session closed. */
static int connect_failed(lua_State *L, struct sess *x)
{
    lua_pushnil(L);
    lua_insert(L, -2);
    sess_close(x);
    return 2;
}

static void push_info(lua_State *L, struct sess *x)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, x->fingerprint);
    lua_setfield(L, -2, "fingerprint");
    lua_pushstring(L, x->key_type);
    lua_setfield(L, -2, "key_type");
    lua_pushboolean(L, x->new_key);
    lua_setfield(L, -2, "new_key");
    lua_pushboolean(L, x->saved);
    lua_setfield(L, -2, "saved");
    lua_pushstring(L, x->auth);
    lua_setfield(L, -2, "auth");
}

static int k_connect(lua_State *L, int status, lua_KContext ctx)
{
    (void)ctx;
    struct sess *x = luaL_checkudata(L, S_SESS, SESSION_MT);
    if (status == LUA_YIELD) {
        enum rb_wake w = rb_loop_woke(L, NULL, 0);
        if (w != RB_WAKE_READY && connect_woke(L, x, w) == STEP_FAIL)
            return connect_failed(L, x);
    }
    struct pollfd want = { .fd = -1, .events = 0, .revents = 0 };
    while (x->phase != P_READY) {
        int r = connect_step(L, x, &want);
        if (r == STEP_WAIT)
            return rb_loop_wait(L, want.fd, want.events, x->deadline, k_connect, 0);
        if (r == STEP_FAIL)
            return connect_failed(L, x);
    }
    rb_net_close(&x->net);
    lua_settop(L, S_SESS);
    push_info(L, x);
    return 2;
}

static const char *spec_string(lua_State *L, const char *name)
{
    if (lua_getfield(L, S_SPEC, name) != LUA_TSTRING)
        luaL_error(L, "ssh.connect: %s must be a string", name);
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1);              /* the string stays in the spec */
    return s;
}

/* ssh.connect(spec) -> session, info | nil, facts */
static int l_connect(lua_State *L)
{
    luaL_checktype(L, S_SPEC, LUA_TTABLE);
    lua_settop(L, S_SPEC);
    const char *host = spec_string(L, "host");
    const char *user = spec_string(L, "user");
    spec_string(L, "known_hosts");
    lua_getfield(L, S_SPEC, "port");
    lua_Integer port = luaL_optinteger(L, -1, 22);
    lua_getfield(L, S_SPEC, "timeout");
    double timeout = luaL_optnumber(L, -1, 10);
    lua_pop(L, 2);
    luaL_argcheck(L, *host != '\0' && strlen(host) < 256, S_SPEC, "host empty or too long");
    luaL_argcheck(L, *user != '\0' && strlen(user) < 128, S_SPEC, "user empty or too long");
    luaL_argcheck(L, port > 0 && port < 65536, S_SPEC, "port must be 1-65535");
    luaL_argcheck(L, timeout >= 0, S_SPEC, "timeout must not be negative");

    struct sess *x = lua_newuserdatauv(L, sizeof *x, 0);       /* S_SESS, closed */
    memset(x, 0, sizeof *x);
    x->fd = -1;
    rb_net_init(&x->net);
    luaL_setmetatable(L, SESSION_MT);
    lua_newtable(L);                                            /* S_TRIED */
    snprintf(x->host, sizeof x->host, "%s", host);
    x->port = (int)port;
    snprintf(x->target, sizeof x->target, strchr(host, ':') ? "%s@[%s]:%d" : "%s@%s:%d",
             user, host, x->port);
    snprintf(x->who, sizeof x->who, "ssh %s", x->target);
    x->timeout = timeout;
    x->deadline = rb_loop_deadline(timeout);
    x->phase = P_RESOLVE;
    return k_connect(L, LUA_OK, 0);
}

/* ---- exec ------------------------------------------------------------- */

static struct sess *check_open(lua_State *L, int idx)
{
    struct sess *x = luaL_checkudata(L, idx, SESSION_MT);
    if (x->s == NULL)
        luaL_error(L, "%s: the session is closed (connect again)", x->who);
    return x;
}

/* Free the channels earlier execs abandoned, once the server closed them. */
static void reap_parked(struct sess *x)
{
    int kept = 0;
    for (int i = 0; i < x->nparked; i++)
        if (libssh2_channel_free(x->parked[i]) == LIBSSH2_ERROR_EAGAIN)
            x->parked[kept++] = x->parked[i];
    x->nparked = kept;
}

/* Let go of the exec's channel without waiting for the server: send the
 * close now, free it later (or with the session). */
static void exec_release(struct sess *x)
{
    LIBSSH2_CHANNEL *ch = x->x.ch;
    x->x.ch = NULL;
    x->busy = 0;
    if (ch == NULL || x->s == NULL)
        return;
    libssh2_channel_close(ch);
    if (libssh2_channel_free(ch) == LIBSSH2_ERROR_EAGAIN && x->nparked < MAX_PARKED)
        x->parked[x->nparked++] = ch;
}

/* The facts of a failed exec: {kind, stage = "exec", problem, command,
 * who, target, reason}; the channel let go.  STEP_FAIL. */
static int exec_fail(lua_State *L, struct sess *x, const char *kind, const char *problem)
{
    rb_net_push_facts(L, kind, "exec");
    rb_net_set(L, "problem", problem);
    rb_net_set(L, "command", lua_tostring(L, E_CMD));
    rb_net_set(L, "who", x->who);
    rb_net_set(L, "target", x->target);
    rb_net_set(L, "reason", last_error(x->s));
    exec_release(x);
    return STEP_FAIL;
}

/* The exec's wait did not end READY: its channel is closed, and the
 * remote command may still run (the facts' words say so).  STEP_FAIL. */
static int exec_woke(lua_State *L, struct sess *x, enum rb_wake w)
{
    rb_net_push_wake(L, w, "exec", x->x.timeout);
    rb_net_set(L, "command", lua_tostring(L, E_CMD));
    rb_net_set(L, "who", x->who);
    rb_net_set(L, "target", x->target);
    exec_release(x);
    return STEP_FAIL;
}

/* nil, facts (on top of the stack). */
static int exec_failed(lua_State *L)
{
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

static void note_dirs(struct sess *x)
{
    x->x.dirs |= libssh2_session_block_directions(x->s);
}

/* Keep a chunk of output (up to OUTPUT_CAP a stream) and pass it to
 * on_output; an error there ends the exec. */
static int keep_chunk(lua_State *L, struct sess *x, int stream, const char *data, size_t n)
{
    struct exec *e = &x->x;
    size_t *total = stream ? &e->err_len : &e->out_len;
    int *count = stream ? &e->err_n : &e->out_n;
    size_t keep = *total + n > OUTPUT_CAP ? OUTPUT_CAP - *total : n;
    e->truncated |= keep < n;
    if (keep > 0) {
        lua_pushlstring(L, data, keep);
        lua_rawseti(L, stream ? E_ERR : E_OUT, ++*count);
        *total += keep;
    }
    if (lua_isnil(L, E_CALLBACK))
        return 0;
    lua_pushvalue(L, E_CALLBACK);
    lua_pushstring(L, stream ? "stderr" : "stdout");
    lua_pushlstring(L, data, n);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        /* Ctrl-C while Lua code runs is raised by a hook, here in the
         * callback: report it as this exec's interruption. */
        if (rb_loop_interrupts(L) > 0)
            return exec_woke(L, x, RB_WAKE_INTERRUPT);
        exec_release(x);
        lua_error(L);
    }
    return 0;
}

/* Read what is there on one stream; a negative libssh2 error, 0, or
 * STEP_FAIL when on_output was interrupted (facts pushed). */
static int read_stream(lua_State *L, struct sess *x, int stream, int *progress)
{
    for (;;) {
        ssize_t n = libssh2_channel_read_ex(x->x.ch, stream, x->x.buf, sizeof x->x.buf);
        if (n == LIBSSH2_ERROR_EAGAIN) {
            note_dirs(x);
            return 0;
        }
        if (n <= 0)
            return (int)n;
        *progress = 1;
        if (keep_chunk(L, x, stream, x->x.buf, (size_t)n) == STEP_FAIL)
            return STEP_FAIL;
    }
}

/* Write what the channel takes of stdin, then send EOF. */
static void feed_stdin(lua_State *L, struct sess *x, int *progress)
{
    struct exec *e = &x->x;
    size_t len = 0;
    const char *data = lua_isnil(L, E_STDIN) ? "" : lua_tolstring(L, E_STDIN, &len);
    while (!e->eof_sent && e->in_off < len) {
        ssize_t n = libssh2_channel_write(e->ch, data + e->in_off, len - e->in_off);
        if (n == LIBSSH2_ERROR_EAGAIN || n == 0) {
            note_dirs(x);
            return;
        }
        if (n < 0)
            e->in_off = len;    /* the command will not read more: stop */
        else
            e->in_off += (size_t)n;
        *progress = 1;
    }
    if (e->eof_sent)
        return;
    int rc = libssh2_channel_send_eof(e->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) {
        note_dirs(x);
        return;
    }
    e->eof_sent = 1;
    *progress = 1;
}

static int x_io(lua_State *L, struct sess *x)
{
    int progress = 0;
    feed_stdin(L, x, &progress);
    int rc = read_stream(L, x, 0, &progress);
    if (rc == 0)
        rc = read_stream(L, x, SSH_EXTENDED_DATA_STDERR, &progress);
    if (rc == STEP_FAIL)
        return STEP_FAIL;
    if (rc < 0)
        return exec_fail(L, x, "closed", "read");
    if (libssh2_channel_eof(x->x.ch)) {
        x->x.phase = X_CLOSE;
        return STEP_ON;
    }
    return progress ? STEP_ON : STEP_WAIT;
}

/* The server sent EOF: close, and read how the command ended. */
static int x_close(lua_State *L, struct sess *x)
{
    struct exec *e = &x->x;
    int rc = libssh2_channel_close(e->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) {
        note_dirs(x);
        return STEP_WAIT;
    }
    e->code = libssh2_channel_get_exit_status(e->ch);
    char *sig = NULL;
    size_t siglen = 0;
    if (libssh2_channel_get_exit_signal(e->ch, &sig, &siglen, NULL, NULL, NULL, NULL) == 0 &&
        sig != NULL) {
        snprintf(e->signal, sizeof e->signal, "%.*s", (int)siglen, sig);
        libssh2_free(x->s, sig);
    }
    exec_release(x);
    (void)L;
    e->phase = X_DONE;
    return STEP_ON;
}

static int x_open(lua_State *L, struct sess *x)
{
    struct exec *e = &x->x;
    if (e->phase == X_OPEN) {
        e->ch = libssh2_channel_open_session(x->s);
        if (e->ch == NULL) {
            if (libssh2_session_last_errno(x->s) == LIBSSH2_ERROR_EAGAIN) {
                note_dirs(x);
                return STEP_WAIT;
            }
            return exec_fail(L, x, "server", "channel");
        }
        e->phase = X_EXEC;
    }
    int rc = libssh2_channel_exec(e->ch, lua_tostring(L, E_CMD));
    if (rc == LIBSSH2_ERROR_EAGAIN) {
        note_dirs(x);
        return STEP_WAIT;
    }
    if (rc != 0)
        return exec_fail(L, x, "server", "exec");
    e->phase = X_IO;
    return STEP_ON;
}

static void push_chunks(lua_State *L, int slot, int n)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, slot, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
}

static void push_result(lua_State *L, struct sess *x)
{
    struct exec *e = &x->x;
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, e->code);
    lua_setfield(L, -2, "code");
    push_chunks(L, E_OUT, e->out_n);
    lua_setfield(L, -2, "stdout");
    push_chunks(L, E_ERR, e->err_n);
    lua_setfield(L, -2, "stderr");
    if (e->signal[0] != '\0') {
        lua_pushstring(L, e->signal);
        lua_setfield(L, -2, "signal");
    }
    if (e->truncated) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "truncated");
    }
    lua_pushnumber(L, rb_loop_now() - e->started);
    lua_setfield(L, -2, "duration");
}

static int k_exec(lua_State *L, int status, lua_KContext ctx)
{
    (void)ctx;
    struct sess *x = luaL_checkudata(L, E_SESS, SESSION_MT);
    if (status == LUA_YIELD) {
        enum rb_wake w = rb_loop_woke(L, NULL, 0);
        if (w != RB_WAKE_READY) {
            exec_woke(L, x, w);
            return exec_failed(L);
        }
    }
    for (;;) {
        int r = STEP_ON;
        x->x.dirs = 0;
        switch (x->x.phase) {
        case X_OPEN:
        case X_EXEC: r = x_open(L, x); break;
        case X_IO: r = x_io(L, x); break;
        case X_CLOSE: r = x_close(L, x); break;
        case X_DONE:
            push_result(L, x);
            return 1;
        }
        if (r == STEP_WAIT) {
            short ev = POLLIN;      /* the server's data, window or close */
            if (x->x.dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)
                ev |= POLLOUT;
            return rb_loop_wait(L, x->fd, ev, x->x.deadline, k_exec, 0);
        }
        if (r == STEP_FAIL)
            return exec_failed(L);
    }
}

/* session:exec(cmd, timeout, stdin, on_output) -> result | nil, facts */
static int l_exec(lua_State *L)
{
    struct sess *x = check_open(L, E_SESS);
    luaL_checkstring(L, E_CMD);
    double timeout = luaL_optnumber(L, E_TIMEOUT, 60);
    luaL_argcheck(L, timeout >= 0, E_TIMEOUT, "timeout must not be negative");
    luaL_argcheck(L, lua_isnoneornil(L, E_STDIN) || lua_type(L, E_STDIN) == LUA_TSTRING,
                  E_STDIN, "stdin must be a string");
    luaL_argcheck(L, lua_isnoneornil(L, E_CALLBACK) || lua_isfunction(L, E_CALLBACK),
                  E_CALLBACK, "on_output must be a function");
    if (x->busy)
        return luaL_error(L, "%s: the session is busy with another command (one command at a "
                          "time on a session: open one session per parallel branch)", x->who);
    lua_settop(L, E_CALLBACK);
    lua_newtable(L);            /* E_OUT */
    lua_newtable(L);            /* E_ERR */
    reap_parked(x);
    struct exec *e = &x->x;
    memset(e, 0, offsetof(struct exec, buf));
    e->timeout = timeout;
    e->started = rb_loop_now();
    e->deadline = rb_loop_deadline(timeout);
    e->phase = X_OPEN;
    x->busy = 1;
    return k_exec(L, LUA_OK, 0);
}

static int l_tostring(lua_State *L)
{
    struct sess *x = luaL_checkudata(L, 1, SESSION_MT);
    lua_pushfstring(L, "ssh session %s%s", x->target, x->s ? "" : " (closed)");
    return 1;
}

int luaopen_runbook_ssh(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "connect", l_connect },
        { NULL, NULL },
    };
    static const luaL_Reg methods[] = {
        { "exec", l_exec },
        { "close", l_close },
        { NULL, NULL },
    };
    /* libssh2 keeps a process-wide reference count and initialises the
     * crypto backend once; this is the one global it needs, and it is
     * never undone (libssh2_exit would pull the backend from under any
     * other state's sessions). */
    libssh2_init(0);
    rb_class(L, SESSION_MT, l_gc, l_tostring, methods);
    luaL_newlib(L, funcs);
    return 1;
}
