/*
 * lineedit.c: the REPL's reading loop, the Lua module "runbook.lineedit".
 *
 * The command is stdlib/runbook/cmd/repl.lua.  C reads the lines (libedit's
 * readline on a terminal, getline otherwise) and keeps the chunk being
 * typed; stdlib/runbook/repl.lua evaluates it in a run of its own, prints
 * the results and records each evaluation.  As in Lua's lua.c, a chunk
 * whose syntax error ends at <eof> is incomplete and the next line
 * continues it.
 *
 * Ctrl-C.  The loop's SIGINT handler (src/loop.c) only counts the press and
 * wakes the loop, so during an evaluation the running wait raises
 * "interrupted" and the prompt comes back.  At the prompt, libedit must not
 * see the signal: its own handling re-raises SIGINT to the whole process
 * group, and its read() retries once after EINTR, swallowing the press.  So
 * libedit's signal handling is off, keys come through repl_getc(), and
 * SIGINT stays blocked while readline() runs except inside repl_getc's
 * ppoll(): a press always lands there, as EINTR.  repl_getc then reports end
 * of input, readline() returns, and the loop's count tells Ctrl-C (discard
 * the chunk, prompt again) from Ctrl-D (quit).  SIGTERM and SIGHUP take the
 * same way in, and end the REPL (run.end "terminated", exit 128 + signal).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <editline/readline.h>
#include <lauxlib.h>

#include "runbook/host.h"
#include "runbook/loop.h"

#define PROMPT "runbook> "
#define PROMPT_MORE "     ...> "
#define HISTORY_MAX 1000

struct repl {
    lua_State *L;
    int obj;            /* stack slot: the object repl.start returned */
    int chunk;          /* stack slot: the chunk typed so far, or nil */
    int tty;            /* read with libedit (stdin is a terminal) */
    const char *history;    /* history file, or NULL */
    int failed;         /* evaluations that raised */
    char prompt[128];       /* session.prompt: says target, live or dry run */
    char prompt_more[128];  /* session.prompt_more: a chunk goes on */
};

/* The signals the loop handles: blocked while libedit runs, let through in
 * repl_getc's ppoll() only. */
static void loop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

/* Read one byte of fd, waiting in ppoll() with the loop's signals let
 * through.  Returns the byte, or EOF on end of input, error, Ctrl-C or a
 * terminating signal. */
static int getc_byte(int fd)
{
    sigset_t mask;
    sigprocmask(SIG_BLOCK, NULL, &mask);
    sigdelset(&mask, SIGINT);
    sigdelset(&mask, SIGTERM);
    sigdelset(&mask, SIGHUP);
    struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
    if (ppoll(&p, 1, NULL, &mask) < 0)
        return EOF;
    unsigned char c;
    ssize_t n;
    do
        n = read(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    return n == 1 ? c : EOF;
}

/* libedit's getc hook.  It hands back a whole character (the hook's result
 * becomes one wchar_t), so UTF-8 sequences are decoded here; a malformed
 * one comes through as its first byte. */
static int repl_getc(FILE *in)
{
    int fd = fileno(in);
    int c = getc_byte(fd);
    if (c == EOF || c < 0xC0 || c > 0xF4)
        return c;
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
    int cp = c & (0x3F >> more);
    for (int i = 0; i < more; i++) {
        int b = getc_byte(fd);
        if (b == EOF)
            return EOF;
        if ((b & 0xC0) != 0x80)
            return c;
        cp = (cp << 6) | (b & 0x3F);
    }
    return cp;
}

/* One line from the terminal, malloc'ed, or NULL (Ctrl-D, or Ctrl-C: the
 * caller asks the loop which).  With a getc hook, libedit switches the
 * terminal to its editing mode only at the first key, after the prompt is
 * out, so keys typed in between would be echoed twice: echo and line
 * buffering go off here first, and the terminal is put back as it was. */
static char *read_tty(const char *prompt)
{
    struct termios saved, quiet;
    int have_tty = tcgetattr(STDIN_FILENO, &saved) == 0;
    if (have_tty) {
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ICANON);
        tcsetattr(STDIN_FILENO, TCSADRAIN, &quiet);
    }
    sigset_t block, mask;
    loop_signals(&block);
    sigprocmask(SIG_BLOCK, &block, &mask);
    char *line = readline(prompt);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    if (have_tty)
        tcsetattr(STDIN_FILENO, TCSADRAIN, &saved);
    return line;
}

/* One line from a pipe or file, malloc'ed, without its newline; NULL at the end. */
static char *read_pipe(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

/* Tab.  libedit's completion hook takes no context, so the session being
 * read is kept here while readline() runs (NULL otherwise). */
static struct repl *completing;

/* Word boundaries for completion: '.' and ':' are not among them, so the
 * word before the cursor is a whole path (sql.co, db:qu). */
static char word_breaks[] = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^~#";

/* The longest prefix all n words share, malloc'ed. */
static char *common_prefix(char **words, size_t n)
{
    size_t len = strlen(words[0]);
    for (size_t i = 1; i < n; i++) {
        size_t j = 0;
        while (j < len && words[i][j] == words[0][j])
            j++;
        len = j;
    }
    return strndup(words[0], len);
}

/* session:complete(text) -> a list of whole words; as libedit wants them:
 * malloc'ed, the common prefix first (or the one match alone), NULL
 * ended; NULL for none.  Lua only reads the session's values raw
 * (stdlib/runbook/complete.lua), so a Tab press never acts. */
static char **repl_complete(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1;     /* no file names instead */
    struct repl *r = completing;
    if (r == NULL)
        return NULL;
    lua_State *L = r->L;
    int top = lua_gettop(L);
    lua_getfield(L, r->obj, "complete");
    lua_pushvalue(L, r->obj);
    lua_pushstring(L, text);
    char **m = NULL;
    if (rb_host_pcall(L, 2, 1) == LUA_OK && lua_istable(L, -1)) {
        size_t n = lua_rawlen(L, -1);
        m = n > 0 ? calloc(n + 2, sizeof *m) : NULL;
        for (size_t i = 0; m != NULL && i < n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            const char *w = lua_tostring(L, -1);
            m[i + 1] = strdup(w != NULL ? w : "");
            lua_pop(L, 1);
        }
        if (m != NULL && n == 1) {
            m[0] = m[1];
            m[1] = NULL;
        } else if (m != NULL) {
            m[0] = common_prefix(m + 1, n);
        }
    }
    lua_settop(L, top);
    return m;
}

/* Set up libedit: our getc, no signal handling of its own, the history,
 * completion through the session. */
static void editline_start(const struct repl *r)
{
    setlocale(LC_CTYPE, "");    /* libedit encodes what is typed by the locale */
    rl_readline_name = "runbook";
    rl_catch_signals = 0;
    rl_getc_function = repl_getc;
    rl_attempted_completion_function = repl_complete;
    rl_basic_word_break_characters = word_breaks;
    rl_completer_word_break_characters = word_breaks;
    rl_completion_append_character = '\0';
    rl_completion_query_items = 10000;    /* its question would read stdin past our getc */
    using_history();
    stifle_history(HISTORY_MAX);
    if (r->history != NULL)
        read_history(r->history);   /* a missing file is a fresh history */
}

/* The history is what the operator typed, redacted only as far as the run
 * knows its secrets: it is theirs alone (0600), like the transcripts. */
static void history_save(const struct repl *r)
{
    if (r->history == NULL)
        return;
    int fd = open(r->history, O_WRONLY | O_CREAT, 0600);
    if (fd >= 0)
        close(fd);
    chmod(r->history, 0600);
    write_history(r->history);
}

/* Add each line of the (redacted) chunk text on top of the stack. */
static void history_add(const struct repl *r)
{
    const char *text = lua_tostring(r->L, -1);
    if (!r->tty || text == NULL)
        return;
    char *copy = strdup(text);
    if (copy == NULL)
        return;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save))
        if (strspn(line, " \t") < strlen(line))
            add_history(line);
    free(copy);
    history_save(r);
}

/* Append line to the pending chunk (a newline between lines). */
static void chunk_append(struct repl *r, const char *line)
{
    lua_State *L = r->L;
    if (lua_isnil(L, r->chunk)) {
        lua_pushstring(L, line);
    } else {
        lua_pushvalue(L, r->chunk);
        lua_pushliteral(L, "\n");
        lua_pushstring(L, line);
        lua_concat(L, 3);
    }
    lua_replace(L, r->chunk);
}

/* repl:eval(chunk, final); returns 1 when the chunk is incomplete.  A
 * complete chunk is dropped and its lines go to the history. */
static int chunk_eval(struct repl *r, int final)
{
    lua_State *L = r->L;
    lua_getfield(L, r->obj, "eval");
    lua_pushvalue(L, r->obj);
    lua_pushvalue(L, r->chunk);
    lua_pushboolean(L, final);
    if (rb_host_pcall(L, 3, 2) != LUA_OK) {
        lua_pushnil(L);
        lua_pushnil(L);
    }
    const char *status = lua_tostring(L, -2);
    int incomplete = status != NULL && strcmp(status, "incomplete") == 0;
    if (!incomplete) {
        if (status == NULL || strcmp(status, "ok") != 0)
            r->failed++;
        history_add(r);
        lua_pushnil(L);
        lua_replace(L, r->chunk);
    }
    lua_pop(L, 2);
    rb_loop_ack_interrupt(L);
    return incomplete;
}

/* Read and evaluate until the input ends.  Returns the run's end status:
 * "done", "interrupted" for Ctrl-C on a pipe, or "terminated" once SIGTERM
 * or SIGHUP came (at the prompt or during an evaluation). */
static const char *repl_loop(struct repl *r)
{
    lua_State *L = r->L;
    for (;;) {
        if (rb_loop_terminated())
            return "terminated";
        int pending = !lua_isnil(L, r->chunk);
        char *line = r->tty ? read_tty(pending ? r->prompt_more : r->prompt) : read_pipe();
        if (rb_loop_terminated()) {
            free(line);
            if (r->tty)
                fputs("\n", stdout);
            return "terminated";
        }
        if (rb_loop_interrupts(L) > 0) {
            rb_loop_ack_interrupt(L);
            free(line);
            if (!r->tty)
                return "interrupted";
            fputs("\n", stdout);
            lua_pushnil(L);
            lua_replace(L, r->chunk);
            continue;
        }
        if (line == NULL) {
            if (r->tty)
                fputs("\n", stdout);
            if (!pending)
                return "done";
            chunk_eval(r, 1);   /* report what is missing, then go on */
            continue;
        }
        if (!pending && line[strspn(line, " \t")] == '\0') {
            free(line);
            continue;
        }
        chunk_append(r, line);
        free(line);
        chunk_eval(r, 0);
    }
}

/* Copy the session's string field name (at stack slot 1) into buf, or
 * fallback when it has none. */
static void session_string(lua_State *L, const char *name, const char *fallback,
                           char *buf, size_t size)
{
    lua_getfield(L, 1, name);
    snprintf(buf, size, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : fallback);
    lua_pop(L, 1);
}

/* lineedit.loop(session) -> status, failures, tty: read and evaluate with
 * session:eval(chunk, final) until the input ends.  status is "done",
 * "interrupted" (Ctrl-C on a pipe) or "terminated"; failures counts the
 * evaluations that failed; tty says whether libedit read a terminal. */
static int l_loop(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    struct repl r = { .L = L, .obj = 1, .tty = isatty(STDIN_FILENO) };
    lua_getfield(L, 1, "history");
    char history[PATH_MAX];
    if (lua_isstring(L, -1)) {
        snprintf(history, sizeof history, "%s", lua_tostring(L, -1));
        r.history = history;
    }
    lua_pop(L, 1);
    session_string(L, "prompt", PROMPT, r.prompt, sizeof r.prompt);
    session_string(L, "prompt_more", PROMPT_MORE, r.prompt_more, sizeof r.prompt_more);
    lua_pushnil(L);
    r.chunk = lua_gettop(L);
    if (r.tty)
        editline_start(&r);
    completing = &r;
    const char *status = repl_loop(&r);
    completing = NULL;
    lua_pushstring(L, status);
    lua_pushinteger(L, r.failed);
    lua_pushboolean(L, r.tty);
    return 3;
}

int luaopen_runbook_lineedit(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "loop", l_loop },
        { NULL, NULL },
    };
    luaL_newlib(L, funcs);
    return 1;
}
