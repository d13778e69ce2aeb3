/*
 * lib_exec.c: local processes on the event loop.
 *
 * exec.run{argv..., timeout=60, stdin=, env=, cwd=, on_output=fn} starts
 * argv directly (vfork and execve, never a shell) in a process group of its own,
 * with stdin from the given string or /dev/null, and waits for it through
 * the loop on three fds: stdout, stderr and a pidfd.  On a timeout, Ctrl-C,
 * SIGTERM/SIGHUP or the step's limit, the whole group gets SIGTERM, then
 * SIGKILL; if runbook itself dies first, the child gets SIGKILL from the
 * kernel (PR_SET_PDEATHSIG, see spawn_proc).  An on_output made by
 * exec.sink (output_sink.c) is fed in C, straight from the read, with no
 * Lua call or string per chunk.  Policy
 * (check=, dry run, the transcript, echoing output) is in the stdlib.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>

#include "runbook/buf.h"
#include "runbook/exec.h"
#include "runbook/host.h"
#include "runbook/loop.h"

#define PROC_MT "runbook.exec.process"
/* What exec keeps in memory of each stream: 32 MiB, then it counts what it
 * drops (result.truncated, stdout_dropped/stderr_dropped) and goes on
 * reading, so an endless writer under a timeout cannot eat memory. */
#define OUTPUT_CAP (32u << 20)
#define DRAIN_AFTER_EXIT 0.2        /* grandchildren may hold the pipes */
#define READ_CHUNK 65536            /* a pipe's default capacity */
#define MAP_AFTER (1u << 20)        /* see stream_init */

extern char **environ;

struct stream {
    int fd;
    rb_buf buf;             /* the capture, at most OUTPUT_CAP */
    size_t dropped;         /* bytes read past OUTPUT_CAP */
};

struct proc {
    pid_t pid;              /* 0 once reaped */
    int pidfd;
    int status;
    int exited;
    double exited_at;
    int in_fd;
    size_t in_off;
    struct stream out, err;
    rb_sink *sink;          /* on_output is exec.sink's feed: shown in C */
    const rb_redactor *redactor;
    double started, deadline, timeout;
    char name[64];
};

/* Stack slots of exec.run and its continuation. */
enum { S_SPEC = 1, S_PROC, S_STDIN, S_CALLBACK };

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Whether the process behind pidfd exits within seconds.  A signal that
 * comes meanwhile (another SIGTERM, a Ctrl-C) does not cut the grace. */
static int exits_within(int pidfd, double seconds)
{
    if (pidfd < 0)
        return 0;
    double end = rb_loop_now() + seconds;
    for (;;) {
        double left = end - rb_loop_now();
        if (left <= 0)
            return 0;
        struct pollfd pf = { .fd = pidfd, .events = POLLIN, .revents = 0 };
        int n = poll(&pf, 1, (int)(left * 1000) + 1);
        if (n > 0)
            return 1;
        if (n == 0 || errno != EINTR)
            return 0;
    }
}

/* Kill the process group and reap the child: SIGTERM, a second's grace,
 * then SIGKILL.  Safe to call twice. */
static void proc_kill(struct proc *p)
{
    if (p->pid <= 0)
        return;
    if (!p->exited) {
        kill(-p->pid, SIGTERM);
        if (!exits_within(p->pidfd, 1.0))
            kill(-p->pid, SIGKILL);
    }
    kill(-p->pid, SIGKILL);     /* what is left of the group */
    while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
        ;
    p->pid = 0;
}

/* The capture grows by doubling up to MAP_AFTER, then moves once to a
 * mapping of the whole OUTPUT_CAP whose pages come as they are touched, in
 * 2 MiB huge pages where the kernel has them: touching 32 MiB of fresh
 * 4 KiB pages cost about 0.1-0.2 s here, as much as the rest of a capture. */
static void stream_init(struct stream *s)
{
    rb_buf_init(&s->buf, OUTPUT_CAP);
    s->buf.map_after = MAP_AFTER;
}

static void stream_free(struct stream *s)
{
    rb_buf_free(&s->buf);
}

static void proc_release(struct proc *p)
{
    proc_kill(p);
    close_fd(&p->pidfd);
    close_fd(&p->in_fd);
    close_fd(&p->out.fd);
    close_fd(&p->err.fd);
    stream_free(&p->out);
    stream_free(&p->err);
}

static int proc_gc(lua_State *L)
{
    proc_release(luaL_checkudata(L, 1, PROC_MT));
    return 0;
}

/* Read what is there, straight into the capture while it is under its cap
 * (past it, into a scratch buffer: shown and counted, not kept), and show
 * it: through the sink in C when on_output is one, else by calling
 * on_output(stream, chunk).  EOF closes.  Returns a Lua status: an error
 * in on_output (a Ctrl-C caught while it runs Lua code among them) is left
 * on the stack for the caller, which must end the process group before
 * raising it. */
static int stream_read(lua_State *L, struct proc *p, struct stream *s, const char *which)
{
    static char scratch[READ_CHUNK];   /* past the cap: shown, not kept */
    char *dst = scratch;
    size_t room = sizeof scratch;
    if (s->buf.len < OUTPUT_CAP) {
        room = OUTPUT_CAP - s->buf.len < READ_CHUNK ? OUTPUT_CAP - s->buf.len : READ_CHUNK;
        if ((dst = rb_buf_reserve(&s->buf, room)) == NULL) {
            lua_pushliteral(L, "exec: out of memory");
            return LUA_ERRMEM;
        }
    }
    ssize_t n = read(s->fd, dst, room);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return LUA_OK;
    if (n <= 0) {
        close_fd(&s->fd);
        return LUA_OK;
    }
    if (dst == scratch)
        s->dropped += (size_t)n;
    else
        s->buf.len += (size_t)n;
    if (p->sink != NULL &&
        rb_sink_feed(p->sink, p->redactor, s == &p->err, dst, (size_t)n) != 0) {
        lua_pushliteral(L, "exec: out of memory showing output");
        return LUA_ERRMEM;
    }
    if (p->sink != NULL || lua_isnil(L, S_CALLBACK))
        return LUA_OK;
    lua_pushvalue(L, S_CALLBACK);
    lua_pushstring(L, which);
    lua_pushlstring(L, dst, (size_t)n);
    return lua_pcall(L, 2, 0, 0);
}

static void feed_stdin(lua_State *L, struct proc *p)
{
    size_t len;
    const char *data = lua_tolstring(L, S_STDIN, &len);
    if (p->in_off < len) {
        ssize_t n = write(p->in_fd, data + p->in_off, len - p->in_off);
        if (n > 0)
            p->in_off += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            p->in_off = len;    /* the child closed its stdin: stop feeding */
    }
    if (p->in_off >= len)
        close_fd(&p->in_fd);
}

static void check_exit(struct proc *p)
{
    if (p->exited)
        return;
    if (waitpid(p->pid, &p->status, WNOHANG) == p->pid) {
        p->exited = 1;
        p->exited_at = rb_loop_now();
        p->pid = -p->pid;       /* reaped: keep the pgid for a last kill */
    }
}

static void push_result(lua_State *L, struct proc *p)
{
    int code = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : 128 + WTERMSIG(p->status);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
    lua_pushboolean(L, code == 0);
    lua_setfield(L, -2, "ok");
    lua_pushlstring(L, p->out.buf.p ? p->out.buf.p : "", p->out.buf.len);
    lua_setfield(L, -2, "stdout");
    lua_pushlstring(L, p->err.buf.p ? p->err.buf.p : "", p->err.buf.len);
    lua_setfield(L, -2, "stderr");
    if (WIFSIGNALED(p->status)) {
        lua_pushstring(L, strsignal(WTERMSIG(p->status)));
        lua_setfield(L, -2, "signal");
    }
    if (p->out.dropped || p->err.dropped) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "truncated");
        lua_pushinteger(L, (lua_Integer)p->out.dropped);
        lua_setfield(L, -2, "stdout_dropped");
        lua_pushinteger(L, (lua_Integer)p->err.dropped);
        lua_setfield(L, -2, "stderr_dropped");
    }
    lua_pushnumber(L, rb_loop_now() - p->started);
    lua_setfield(L, -2, "duration");
}

static int build_waits(struct proc *p, struct pollfd *pf)
{
    int n = 0;
    struct { int fd; short ev; } want[] = {
        { p->out.fd, POLLIN }, { p->err.fd, POLLIN },
        { p->exited ? -1 : p->pidfd, POLLIN }, { p->in_fd, POLLOUT },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (want[i].fd >= 0) {
            pf[n].fd = want[i].fd;
            pf[n].events = want[i].ev;
            pf[n].revents = 0;
            n++;
        }
    }
    return n;
}

static int k_proc(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    struct proc *p = luaL_checkudata(L, S_PROC, PROC_MT);
    struct pollfd pf[4];
    int n = build_waits(p, pf);
    enum rb_wake w = rb_loop_woke(L, pf, n);
    if (w != RB_WAKE_READY && !(w == RB_WAKE_TIMEOUT && p->exited)) {
        proc_release(p);
        char who[96];
        snprintf(who, sizeof who, "exec %s", p->name);
        return rb_loop_raise(L, w, who, w == RB_WAKE_TIMEOUT ? "run" : "wait",
                             p->timeout);
    }
    for (int i = 0; i < n; i++) {
        int rc = LUA_OK;
        if (pf[i].revents == 0)
            continue;
        if (pf[i].fd == p->out.fd)
            rc = stream_read(L, p, &p->out, "stdout");
        else if (pf[i].fd == p->err.fd)
            rc = stream_read(L, p, &p->err, "stderr");
        else if (pf[i].fd == p->in_fd)
            feed_stdin(L, p);
        if (rc != LUA_OK) {
            proc_release(p);
            return lua_error(L);
        }
    }
    check_exit(p);
    double drain_end = p->exited_at + DRAIN_AFTER_EXIT;
    int pipes_open = p->out.fd >= 0 || p->err.fd >= 0;
    if (p->exited && (!pipes_open || rb_loop_now() >= drain_end)) {
        push_result(L, p);
        proc_release(p);
        return 1;
    }
    n = build_waits(p, pf);
    double deadline = p->deadline;
    if (p->exited && (deadline <= 0 || drain_end < deadline))
        deadline = drain_end;
    return rb_loop_waitv(L, pf, n, deadline, k_proc, 0);
}

/* Collect argv from spec[1..n]; the strings stay anchored in the spec. */
static const char **collect_argv(lua_State *L)
{
    lua_Integer n = luaL_len(L, S_SPEC);
    luaL_argcheck(L, n >= 1, S_SPEC, "argv is empty (exec{\"cmd\", \"arg\", ...})");
    const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, S_SPEC, i);
        if (!lua_isstring(L, -1))
            luaL_error(L, "exec: argv[%d] is a %s, not a string", (int)i, luaL_typename(L, -1));
        argv[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    argv[n] = NULL;
    return argv;
}

/* environ with spec.env's entries added or replaced; the "K=V" strings are
 * anchored in a table left on the stack. */
static char **collect_env(lua_State *L)
{
    if (lua_getfield(L, S_SPEC, "env") != LUA_TTABLE) {
        lua_pop(L, 1);
        return environ;
    }
    int envt = lua_gettop(L);
    lua_newtable(L);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, envt)) {
        if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
            luaL_error(L, "exec: env keys and values must be strings");
        lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
        lua_rawseti(L, envt + 1, ++n);
        lua_pop(L, 1);
    }
    int base = 0;
    while (environ[base])
        base++;
    char **env = lua_newuserdatauv(L, sizeof(char *) * (size_t)(base + n + 1), 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, envt + 1, i + 1);
        env[i] = (char *)lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    int m = n;
    for (int i = 0; i < base; i++) {
        size_t klen = strcspn(environ[i], "=");
        int overridden = 0;
        for (int j = 0; j < n && !overridden; j++)
            overridden = strncmp(env[j], environ[i], klen + 1) == 0;
        if (!overridden)
            env[m++] = environ[i];
    }
    env[m] = NULL;
    return env;
}

/* The program to run: name itself when it holds a '/', else the first
 * executable file named name in the directories of $PATH (as execvp and
 * posix_spawnp look it up: runbook's own PATH, not spec.env's).  Done
 * before fork, where the child may not allocate.  Returns 0 or an errno. */
static int find_program(const char *name, char *out, size_t outlen)
{
    if (strchr(name, '/') != NULL) {
        if (strlen(name) >= outlen)
            return ENAMETOOLONG;
        strcpy(out, name);
        return 0;
    }
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/bin:/usr/bin";
    int found_denied = 0;
    for (const char *dir = path;; dir++) {
        size_t len = strcspn(dir, ":");
        int n = snprintf(out, outlen, "%.*s%s%s", (int)len, dir, len ? "/" : "", name);
        struct stat st;
        if (n > 0 && (size_t)n < outlen && stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(out, X_OK) == 0)
                return 0;
            found_denied = 1;
        }
        dir += len;
        if (*dir == '\0')
            break;
    }
    return found_denied ? EACCES : ENOENT;
}

/* In the child: every signal with a handler back to its default (a
 * handler would run on the parent's memory, the loop's self-pipe and all),
 * and the ignored SIGPIPE and SIGINT too, as for a program started from a
 * shell; another inherited SIG_IGN (nohup's SIGHUP) stays. */
static void child_signals(void)
{
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction old;
        if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &old) != 0)
            continue;
        int ignored = old.sa_handler == SIG_IGN && !(old.sa_flags & SA_SIGINFO);
        int handled = old.sa_handler != SIG_DFL && !ignored;
        if (handled || (ignored && (sig == SIGPIPE || sig == SIGINT)))
            signal(sig, SIG_DFL);
    }
}

/* fd as the child's fd `to`, open across exec (dup2 alone would leave a
 * close-on-exec fd that already is `to` as it is). */
static int move_fd(int fd, int to)
{
    if (fd == to)
        return fcntl(fd, F_SETFD, 0);
    return dup2(fd, to);
}

/* What the child does between vfork and exec: async-signal-safe calls
 * only, on the parent's memory (it is suspended meanwhile; other threads,
 * a name lookup for ssh or redis, are not).  Signals are blocked on entry
 * and let through only once their handlers are gone.  An errno that stops
 * it is written to errfd for the parent. */
static void child_setup(const char *path, const char **argv, char **envp, const char *cwd,
                        int stdin_fd, int out_fd, int err_fd, pid_t parent, int errfd)
{
    child_signals();
    setpgid(0, 0);
    /* If runbook dies without ending the group (SIGKILL, a crash), the
     * child dies with it.  A parent that died before the prctl would never
     * send the signal: then getppid() is no longer it. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127);
    int e = 0;
    int null = stdin_fd < 0 ? open("/dev/null", O_RDONLY | O_CLOEXEC) : -1;
    if (stdin_fd < 0)
        stdin_fd = null;
    if (stdin_fd < 0 || move_fd(stdin_fd, 0) < 0 || move_fd(out_fd, 1) < 0 || move_fd(err_fd, 2) < 0)
        e = errno;
    if (e == 0 && cwd != NULL && chdir(cwd) != 0)
        e = errno;
    if (e == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(path, (char *const *)argv, envp);
        e = errno;
    }
    ssize_t n = write(errfd, &e, sizeof e);
    (void)n;
    _exit(127);
}

/* Read the child's report: 0 once it exec'ed (the CLOEXEC pipe closed), or
 * the errno that stopped it (the child is reaped then). */
static int child_report(pid_t pid, int errfd)
{
    int e = 0;
    ssize_t n;
    do
        n = read(errfd, &e, sizeof e);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof e)
        return 0;
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return e ? e : ECHILD;
}

/*
 * vfork and execve, not posix_spawnp: the child must set PR_SET_PDEATHSIG,
 * which posix_spawn cannot.  vfork, as glibc's posix_spawn does: fork()
 * copies the host's page tables and made a spawn twice as slow here.
 * The death signal is SIGKILL: it only fires
 * when runbook could not end the group itself (runbook was SIGKILLed or
 * crashed), so there is nobody left to follow a SIGTERM that the child
 * ignores or traps with a SIGKILL, and an unwatched command acting on
 * production is the worse outcome.  It reaches the child only: a
 * grandchild in the group (sh -c 'x &') survives a SIGKILLed runbook.
 */
static int spawn_proc(lua_State *L, struct proc *p, const char **argv, char **envp,
                      const char *cwd, int want_stdin)
{
    char path[PATH_MAX];
    int rc = find_program(argv[0], path, sizeof path);
    if (rc != 0)
        return rc;
    int out[2] = { -1, -1 }, err[2] = { -1, -1 }, in[2] = { -1, -1 }, rep[2] = { -1, -1 };
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
        (want_stdin && pipe2(in, O_CLOEXEC) != 0) || pipe2(rep, O_CLOEXEC) != 0) {
        int e = errno;
        int *pipes[] = { out, err, in, rep };
        for (size_t i = 0; i < sizeof pipes / sizeof pipes[0]; i++) {
            close_fd(&pipes[i][0]);
            close_fd(&pipes[i][1]);
        }
        return e;
    }
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t parent = getpid();
    pid_t pid = vfork();
    if (pid == 0)
        child_setup(path, argv, envp, cwd, want_stdin ? in[0] : -1, out[1], err[1], parent, rep[1]);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    close(out[1]);
    close(err[1]);
    close(rep[1]);
    if (want_stdin)
        close(in[0]);
    p->out.fd = out[0];
    p->err.fd = err[0];
    p->in_fd = in[1];
    if (pid < 0) {
        close(rep[0]);
        return fork_errno;
    }
    rc = child_report(pid, rep[0]);
    close(rep[0]);
    if (rc != 0)
        return rc;
    p->pid = pid;
    p->pidfd = pidfd_open(pid, 0);
    fcntl(p->out.fd, F_SETFL, O_NONBLOCK);
    fcntl(p->err.fd, F_SETFL, O_NONBLOCK);
    if (p->in_fd >= 0)
        fcntl(p->in_fd, F_SETFL, O_NONBLOCK);
    (void)L;
    return 0;
}

/* ---- ANSI escapes ---------------------------------------------------
 * Tools such as pm2 colour their output even into a pipe; the escapes
 * defeat the patterns runbooks match output with and would reach notify,
 * error messages and the report.  One pass, no allocation: the common case
 * (no ESC at all) is a memchr. */

#define ESC 0x1b

/* Length of the string sequence (OSC, DCS...) at s[0..len), ESC and its
 * introducer included: up to BEL or ESC \, else up to (not including) a
 * newline or the end. */
static size_t string_seq_len(const char *s, size_t len)
{
    for (size_t i = 2; i < len; i++) {
        if (s[i] == '\a')
            return i + 1;
        if (s[i] == ESC && i + 1 < len && s[i + 1] == '\\')
            return i + 2;
        if (s[i] == '\n')
            return i;
    }
    return len;
}

/* Length of the CSI at s[0..len): parameter bytes 0x30-0x3f, intermediate
 * bytes 0x20-0x2f, then one final byte 0x40-0x7e.  A byte outside those
 * ends a malformed sequence without being part of it. */
static size_t csi_len(const char *s, size_t len)
{
    size_t i = 2;
    while (i < len && (unsigned char)s[i] >= 0x30 && (unsigned char)s[i] <= 0x3f)
        i++;
    while (i < len && (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] <= 0x2f)
        i++;
    if (i < len && (unsigned char)s[i] >= 0x40 && (unsigned char)s[i] <= 0x7e)
        i++;
    return i;
}

/* Length of the escape starting with the ESC at s[0]. */
static size_t escape_len(const char *s, size_t len)
{
    if (len < 2)
        return 1;
    unsigned char c = (unsigned char)s[1];
    if (c == '[')
        return csi_len(s, len);
    if (c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_')
        return string_seq_len(s, len);
    size_t i = 1;
    while (i < len && (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] <= 0x2f)
        i++;                                    /* ESC ( B and the like */
    if (i < len && (unsigned char)s[i] >= 0x30 && (unsigned char)s[i] <= 0x7e)
        i++;
    return i;
}

size_t rb_exec_strip_ansi(char *s, size_t len)
{
    if (len == 0)
        return 0;           /* s may be NULL then: an empty line of an empty buffer */
    char *esc = memchr(s, ESC, len);
    if (esc == NULL)
        return len;
    size_t out = (size_t)(esc - s), i = out;
    while (i < len) {
        if (s[i] == ESC) {
            i += escape_len(s + i, len - i);
            continue;
        }
        const char *next = memchr(s + i, ESC, len - i);
        size_t n = next ? (size_t)(next - (s + i)) : len - i;
        memmove(s + out, s + i, n);
        out += n;
        i += n;
    }
    return out;
}

/* exec.strip_ansi(s) -> s without its escape sequences */
static int l_strip_ansi(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (memchr(s, ESC, len) == NULL) {
        lua_settop(L, 1);
        return 1;
    }
    luaL_Buffer b;
    char *copy = luaL_buffinitsize(L, &b, len);
    memcpy(copy, s, len);
    luaL_pushresultsize(&b, rb_exec_strip_ansi(copy, len));
    return 1;
}

/* exec.run(spec) -> {code, ok, stdout, stderr, signal, duration} */
static int l_run(lua_State *L)
{
    luaL_checktype(L, S_SPEC, LUA_TTABLE);
    lua_settop(L, S_SPEC);
    lua_getfield(L, S_SPEC, "timeout");
    double timeout = luaL_optnumber(L, -1, 60);
    lua_getfield(L, S_SPEC, "cwd");
    const char *cwd = lua_tostring(L, -1);
    lua_pop(L, 2);
    luaL_argcheck(L, timeout >= 0, S_SPEC, "timeout must not be negative");

    struct proc *p = lua_newuserdatauv(L, sizeof *p, 0);     /* S_PROC, closed */
    memset(p, 0, sizeof *p);
    p->pidfd = p->in_fd = p->out.fd = p->err.fd = -1;
    stream_init(&p->out);
    stream_init(&p->err);
    luaL_setmetatable(L, PROC_MT);
    lua_getfield(L, S_SPEC, "stdin");                       /* S_STDIN */
    if (!lua_isnil(L, S_STDIN) && !lua_isstring(L, S_STDIN))
        return luaL_error(L, "exec: stdin must be a string");
    lua_getfield(L, S_SPEC, "on_output");                   /* S_CALLBACK */
    if (!lua_isnil(L, S_CALLBACK) && !lua_isfunction(L, S_CALLBACK))
        return luaL_error(L, "exec: on_output must be a function");
    if ((p->sink = rb_sink_of(L, S_CALLBACK)) != NULL)
        p->redactor = rb_redactor_of(L);

    const char **argv = collect_argv(L);
    char **envp = collect_env(L);
    snprintf(p->name, sizeof p->name, "%s", argv[0]);
    p->timeout = timeout;
    p->started = rb_loop_now();
    p->deadline = rb_loop_deadline(timeout);
    int rc = spawn_proc(L, p, argv, envp, cwd, !lua_isnil(L, S_STDIN));
    if (rc != 0) {
        proc_release(p);
        return luaL_error(L, "exec: cannot run '%s': %s (check it is installed and on PATH)",
                          argv[0], strerror(rc));
    }
    lua_settop(L, S_CALLBACK);
    if (p->in_fd >= 0)
        feed_stdin(L, p);
    struct pollfd pf[4];
    int n = build_waits(p, pf);
    return rb_loop_waitv(L, pf, n, p->deadline, k_proc, 0);
}

int luaopen_runbook_exec(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "run", l_run },
        { "strip_ansi", l_strip_ansi },
        { "sink", rb_exec_sink_new },
        { NULL, NULL },
    };
    rb_class(L, PROC_MT, proc_gc, NULL, NULL);
    rb_exec_sink_class(L);
    luaL_newlib(L, funcs);
    lua_pushinteger(L, OUTPUT_CAP);
    lua_setfield(L, -2, "output_cap");
    return 1;
}
