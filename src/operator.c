/*
 * operator.c: the person at the keyboard.  See operator.h.
 *
 * Input is read from stdin through the event loop into a small buffer kept
 * in the registry, one line per call, so a question waits like any other
 * primitive and Ctrl-C interrupts it.  The saved terminal mode is the one
 * piece of static state: the terminal is process-wide, and main() must be
 * able to put it back whatever happened.
 */
#include "runbook/operator.h"

#include <errno.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "runbook/loop.h"

#define INPUT_KEY "runbook.operator.input"
#define INPUT_MAX 65536

struct input {
    size_t len;
    int eof;
    char buf[INPUT_MAX];
};

static struct termios saved_tty;
static int tty_saved;

void rb_operator_restore_tty(void)
{
    if (tty_saved) {
        /* TCSANOW, not TCSAFLUSH: type-ahead is the operator's next answer */
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
        tty_saved = 0;
    }
}

static void echo_off(void)
{
    struct termios t;
    if (tty_saved || tcgetattr(STDIN_FILENO, &saved_tty) != 0)
        return;
    t = saved_tty;
    t.c_lflag &= ~(tcflag_t)ECHO;
    t.c_lflag |= ECHONL;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
        tty_saved = 1;
}

static struct input *get_input(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, INPUT_KEY) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        struct input *in = lua_newuserdatauv(L, sizeof *in, 0);
        in->len = 0;
        in->eof = 0;
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, INPUT_KEY);
    }
    struct input *in = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return in;
}

/* Push the first buffered line (without its newline) and drop it from the
 * buffer; return 0 when no whole line is buffered. */
static int take_line(lua_State *L, struct input *in)
{
    char *nl = memchr(in->buf, '\n', in->len);
    size_t n;
    if (nl != NULL)
        n = (size_t)(nl - in->buf);
    else if (in->eof || in->len == sizeof in->buf)
        n = in->len;
    else
        return 0;
    size_t len = n;
    if (len > 0 && in->buf[len - 1] == '\r')
        len--;
    lua_pushlstring(L, in->buf, len);
    size_t drop = nl != NULL ? n + 1 : n;
    memmove(in->buf, in->buf + drop, in->len - drop);
    in->len -= drop;
    return 1;
}

static int k_readline(lua_State *L, int status, lua_KContext ctx);

/* A wait's context: the timeout in milliseconds, and in the low bit
 * whether a timeout returns false (tick = true) instead of raising. */
#define CTX_TICK 1
#define CTX_MS(ctx) ((double)((ctx) >> 1))

/* Push the next line (or nil at the end of input) and give the terminal
 * back, or wait for more input. */
static int answer_or_wait(lua_State *L, struct input *in, lua_KContext ctx)
{
    if (take_line(L, in)) {
        rb_operator_restore_tty();
        return 1;
    }
    if (in->eof) {
        rb_operator_restore_tty();
        lua_pushnil(L);
        return 1;
    }
    double timeout = CTX_MS(ctx) / 1000.0;
    return rb_loop_wait(L, STDIN_FILENO, POLLIN, rb_loop_deadline(timeout), k_readline, ctx);
}

static int k_readline(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    struct input *in = get_input(L);
    enum rb_wake w = rb_loop_woke(L, NULL, 0);
    if (w == RB_WAKE_TIMEOUT && (ctx & CTX_TICK)) {
        /* the caller does its periodic work and reads on: the terminal
         * stays as it is (echo off for a secret), what was typed stays
         * buffered */
        lua_pushboolean(L, 0);
        return 1;
    }
    if (w != RB_WAKE_READY) {
        rb_operator_restore_tty();
        return rb_loop_raise(L, w, "operator", "answer", CTX_MS(ctx) / 1000.0);
    }
    ssize_t n = read(STDIN_FILENO, in->buf + in->len, sizeof in->buf - in->len);
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        in->eof = 1;
    else if (n == 0)
        in->eof = 1;
    else if (n > 0)
        in->len += (size_t)n;
    return answer_or_wait(L, in, ctx);
}

/* operator.readline([{secret=, timeout=, prompt=, tick=}]) -> line | nil at
 * end of input.  Raises on timeout and on Ctrl-C; with tick = true a
 * timeout returns false instead, and a second call without the prompt
 * reads on (the escalation timer of a question, runbook.escalation). */
static int l_readline(lua_State *L)
{
    int secret = 0, tick = 0;
    double timeout = 0;
    size_t plen = 0;
    const char *prompt = NULL;
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "secret");
        secret = lua_toboolean(L, -1);
        lua_getfield(L, 1, "timeout");
        timeout = luaL_optnumber(L, -1, 0);
        lua_getfield(L, 1, "tick");
        tick = lua_toboolean(L, -1);
        lua_getfield(L, 1, "prompt");
        prompt = lua_tolstring(L, -1, &plen);   /* stays on the stack */
    }
    if (timeout < 0 || timeout > 1e9)
        return luaL_error(L, "operator.readline: timeout must be 0 to 1e9 seconds");
    /* Echo goes off before the prompt is shown: whatever the operator types
     * once they see it is never echoed. */
    if (secret && isatty(STDIN_FILENO))
        echo_off();
    if (prompt != NULL) {
        fwrite(prompt, 1, plen, stdout);
        fflush(stdout);
    }
    /* rounded up: a timeout of under a millisecond must not become 0,
     * which is no timeout at all */
    lua_KContext ms = (lua_KContext)ceil(timeout * 1000.0);
    lua_KContext ctx = (ms << 1) | (tick ? CTX_TICK : 0);
    return answer_or_wait(L, get_input(L), ctx);
}

/* A stdout that is a pipe (runbook run ... | tee log) is given room for a
 * megabyte, as the pipes of exec's children have: a fast command's output
 * then goes on in a few large writes instead of one per 64 KiB the reader
 * took.  Asked once; only a hint (a pipe at its user's limit stays as it
 * is). */
static void widen_stdout_pipe(void)
{
    static int done;
    struct stat st;
    if (done)
        return;
    done = 1;
    if (fstat(STDOUT_FILENO, &st) == 0 && S_ISFIFO(st.st_mode))
        fcntl(STDOUT_FILENO, F_SETPIPE_SZ, 1 << 20);
}

void rb_operator_write(const char *s, size_t n)
{
    widen_stdout_pipe();
    fflush(stdout);
    while (n > 0) {
        ssize_t k = write(STDOUT_FILENO, s, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN) {
            /* a stdout someone else made non-blocking: wait until it drains */
            struct pollfd pf = { .fd = STDOUT_FILENO, .events = POLLOUT, .revents = 0 };
            if (poll(&pf, 1, 1000) >= 0)
                continue;
        }
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

static int write_to(lua_State *L, FILE *f)
{
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_checklstring(L, i, &len);
        fwrite(s, 1, len, f);
    }
    fflush(f);
    return 0;
}

static int l_write(lua_State *L)
{
    return write_to(L, stdout);
}

static int l_ewrite(lua_State *L)
{
    return write_to(L, stderr);
}

static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

static int l_username(lua_State *L)
{
    struct passwd *pw = getpwuid(geteuid());
    const char *env = getenv("SUDO_USER");
    if (env != NULL && *env != '\0')
        lua_pushstring(L, env);
    else if (pw != NULL)
        lua_pushstring(L, pw->pw_name);
    else
        lua_pushfstring(L, "uid %d", (int)geteuid());
    return 1;
}

static int l_hostname(lua_State *L)
{
    char name[256];
    if (gethostname(name, sizeof name) != 0)
        return luaL_error(L, "operator: gethostname failed: %s", strerror(errno));
    name[sizeof name - 1] = '\0';
    lua_pushstring(L, name);
    return 1;
}

int luaopen_runbook_operator(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "readline", l_readline },
        { "write", l_write },
        { "ewrite", l_ewrite },
        { "isatty", l_isatty },
        { "username", l_username },
        { "hostname", l_hostname },
        { NULL, NULL },
    };
    luaL_newlib(L, funcs);
    return 1;
}
