/*
 * loop.c: tasks (Lua coroutines) driven by one poll() loop.  See loop.h.
 *
 * A task is a Lua thread whose extra space (lua_getextraspace) points at its
 * rb_task, so a primitive finds its task without a lookup.  Threads that are
 * not tasks (the main thread, a coroutine an author made) have NULL there:
 * their waits block in a private poll() instead of yielding, since a yield
 * would go to whoever resumed them, not to the loop.
 */
#include "runbook/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#define LOOP_KEY "runbook.loop"

enum task_state { T_READY, T_WAIT_IO, T_WAIT_CHILDREN, T_DONE };

struct rb_wait {
    struct pollfd fds[RB_LOOP_MAXFD];
    int nfds;
    double deadline;        /* of this wait, capped by the task's limit */
    int capped;             /* the deadline is the task's limit */
    enum rb_wake woke;
};

typedef struct rb_task {
    lua_State *co;
    int ref;                /* registry reference keeping co alive */
    struct rb_loop *loop;
    struct rb_task *parent;
    struct rb_task *next;   /* the loop's list of live tasks */
    int children;           /* live children (spawn/join) */
    int nargs;              /* arguments for the first resume */
    int started;
    enum task_state state;
    double limit;           /* absolute; 0 none (inherited by children) */
    struct rb_wait wait;
    int status;             /* lua status once T_DONE */
    int orphan;             /* its parent ended first: free it when it ends */
} rb_task;

typedef struct rb_loop {
    rb_task *tasks;
    struct rb_wait main_wait;   /* for waits outside any task */
    struct pollfd *pfd;         /* poll() set, grown to fit every waiter */
    rb_task **owner;            /* the task each pfd entry belongs to */
    size_t cap;
} rb_loop;

/* Signal handlers may touch only these (as Lua's lua.c does). */
static volatile sig_atomic_t sigint_count;     /* written by the handler only */
static volatile sig_atomic_t sigint_acked;     /* written by the loop only */
static volatile sig_atomic_t term_signal;      /* the first SIGTERM/SIGHUP; never reset */
static volatile sig_atomic_t term_pending;     /* it counts as an interrupt until acked */
static volatile sig_atomic_t term_shielded;    /* the run's cleanup: interrupt nothing */
static int sig_pipe[2] = { -1, -1 };
static lua_State *volatile running_task;

double rb_loop_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double rb_loop_deadline(double seconds)
{
    return seconds > 0 ? rb_loop_now() + seconds : 0;
}

static rb_loop *get_loop(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
    rb_loop *loop = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (loop == NULL)
        luaL_error(L, "runbook: event loop not initialised");
    return loop;
}

static rb_task *current_task(lua_State *L)
{
    return *(rb_task **)lua_getextraspace(L);
}

/* A Lua hook set from the signal handler stops a task that is busy in Lua
 * code rather than waiting (for example `while true do end`). */
static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_where(L, 0);   /* the busy function itself, not its caller */
    lua_pushstring(L, rb_loop_interrupt_text());
    lua_concat(L, 2);
    lua_error(L);
}

/* Wake the loop and stop the task busy in Lua code, if any. */
static void wake_loop(void)
{
    if (sig_pipe[1] >= 0) {
        ssize_t n = write(sig_pipe[1], "!", 1);
        (void)n;
    }
    lua_State *t = running_task;
    if (t != NULL)
        lua_sethook(t, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void on_sigint(int sig)
{
    (void)sig;
    int saved = errno;
    sigint_count++;
    if (sigint_count - sigint_acked >= 3)
        _exit(130);     /* the escape hatch when nothing answers Ctrl-C */
    wake_loop();
    errno = saved;
}

/*
 * SIGTERM and SIGHUP end the run: the first one is an interrupt that the
 * engine takes as "terminate" (no question) and never forgets.  Later ones
 * change nothing: a dropped ssh session typically delivers SIGHUP twice
 * (the shell forwards it, then the kernel sends it when the shell exits),
 * and cutting the cleanup short would leave the team lock held.  The
 * cleanup is bounded by its own timeouts, and SIGKILL is still there; the
 * handler never exits, so no transcript line is left half written.  For
 * the same reason a first signal that comes during the cleanup (the
 * shield, set by engine.finish) is only recorded.
 */
static void on_term(int sig)
{
    int saved = errno;
    if (term_signal == 0) {
        term_signal = sig;
        if (!term_shielded) {
            term_pending = 1;
            wake_loop();
        }
    }
    errno = saved;
}

void rb_loop_signals(lua_State *L)
{
    (void)L;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void rb_loop_catch_term(void)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    /* Started under nohup: SIGHUP stays ignored, as nohup promised. */
    if (sigaction(SIGHUP, NULL, &old) != 0 || old.sa_handler != SIG_IGN)
        sigaction(SIGHUP, &sa, NULL);
}

int rb_loop_terminated(void)
{
    return (int)term_signal;
}

const char *rb_loop_signal_name(int sig)
{
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    default: return "a signal";
    }
}

const char *rb_loop_interrupt_text(void)
{
    switch (term_signal) {
    case SIGTERM: return "terminated (SIGTERM)";
    case SIGHUP: return "terminated (SIGHUP)";
    default: return "interrupted (Ctrl-C)";
    }
}

static int loop_gc(lua_State *L)
{
    rb_loop *loop = lua_touserdata(L, 1);
    rb_task *t = loop->tasks;
    while (t != NULL) {
        rb_task *next = t->next;
        free(t);
        t = next;
    }
    loop->tasks = NULL;
    free(loop->pfd);
    free(loop->owner);
    loop->pfd = NULL;
    loop->owner = NULL;
    return 0;
}

/* Make room for n waiting fds plus the signal pipe. */
static void reserve_fds(lua_State *L, rb_loop *loop, size_t n)
{
    if (n + 1 <= loop->cap)
        return;
    size_t cap = loop->cap ? loop->cap : 64;
    while (cap < n + 1)
        cap *= 2;
    struct pollfd *pfd = realloc(loop->pfd, cap * sizeof *pfd);
    if (pfd != NULL)
        loop->pfd = pfd;
    rb_task **owner = realloc(loop->owner, cap * sizeof *owner);
    if (owner != NULL)
        loop->owner = owner;
    if (pfd == NULL || owner == NULL)
        luaL_error(L, "runbook: out of memory for the poll set");
    loop->cap = cap;
}

void rb_loop_init(lua_State *L)
{
    rb_loop *loop = lua_newuserdatauv(L, sizeof *loop, 0);
    memset(loop, 0, sizeof *loop);
    lua_newtable(L);
    lua_pushcfunction(L, loop_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
    *(rb_task **)lua_getextraspace(L) = NULL;
    if (sig_pipe[0] < 0 && pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        luaL_error(L, "runbook: cannot create the signal pipe: %s", strerror(errno));
    rb_loop_signals(L);
}

static void drain_sig_pipe(void)
{
    char buf[64];
    while (read(sig_pipe[0], buf, sizeof buf) > 0)
        ;
}

int rb_loop_interrupts(lua_State *L)
{
    (void)L;
    return (int)(sigint_count - sigint_acked) + (int)term_pending;
}

void rb_loop_ack_interrupt(lua_State *L)
{
    (void)L;
    term_pending = 0;
    sigint_acked = sigint_count;
}

static double ms_until(double deadline)
{
    if (deadline <= 0)
        return -1;
    double ms = (deadline - rb_loop_now()) * 1000.0;
    return ms < 0 ? 0 : ms + 1;
}

static void (*before_block_fn)(void *);
static void *before_block_ud;

void rb_loop_before_block(void (*fn)(void *ud), void *ud)
{
    before_block_fn = fn;
    before_block_ud = ud;
}

static unsigned long polls;         /* rb_loop_polls */

unsigned long rb_loop_polls(void)
{
    return polls;
}

/* A poll of ms milliseconds is about to start: one that may wait first
 * runs (and forgets) the hook set by rb_loop_before_block. */
static int about_to_block(int ms)
{
    void (*fn)(void *) = before_block_fn;
    polls++;
    if (ms != 0 && fn != NULL) {
        before_block_fn = NULL;
        fn(before_block_ud);
    }
    return ms;
}

/* Wait outside the loop: poll just these fds and the signal pipe. */
static void block_wait(lua_State *L, struct rb_wait *w)
{
    struct pollfd pfd[RB_LOOP_MAXFD + 1];
    for (;;) {
        if (rb_loop_interrupts(L) > 0) {
            lua_sethook(L, NULL, 0, 0);
            w->woke = RB_WAKE_INTERRUPT;
            return;
        }
        memcpy(pfd, w->fds, sizeof(struct pollfd) * (size_t)w->nfds);
        pfd[w->nfds].fd = sig_pipe[0];
        pfd[w->nfds].events = POLLIN;
        pfd[w->nfds].revents = 0;
        int n = poll(pfd, (nfds_t)w->nfds + 1, about_to_block((int)ms_until(w->deadline)));
        if (n < 0 && errno != EINTR) {
            w->woke = RB_WAKE_TIMEOUT;
            return;
        }
        if (pfd[w->nfds].revents)
            drain_sig_pipe();
        int ready = 0;
        for (int i = 0; i < w->nfds; i++) {
            w->fds[i].revents = pfd[i].revents;
            ready |= pfd[i].revents != 0;
        }
        if (ready) {
            w->woke = RB_WAKE_READY;
            return;
        }
        if (w->deadline > 0 && rb_loop_now() >= w->deadline) {
            w->woke = w->capped ? RB_WAKE_CANCEL : RB_WAKE_TIMEOUT;
            return;
        }
    }
}

static void set_wait(struct rb_wait *w, const struct pollfd *fds, int nfds,
                     double deadline, double limit)
{
    w->nfds = nfds;
    for (int i = 0; i < nfds; i++) {
        w->fds[i] = fds[i];
        w->fds[i].revents = 0;
    }
    w->deadline = deadline;
    w->capped = 0;
    if (limit > 0 && (deadline <= 0 || limit < deadline)) {
        w->deadline = limit;
        w->capped = 1;
    }
    w->woke = RB_WAKE_READY;
}

int rb_loop_waitv(lua_State *L, const struct pollfd *fds, int nfds,
                  double deadline, lua_KFunction k, lua_KContext ctx)
{
    luaL_argcheck(L, nfds >= 0 && nfds <= RB_LOOP_MAXFD, 1, "too many fds to wait on");
    rb_task *t = current_task(L);
    if (t == NULL || !lua_isyieldable(L)) {
        rb_loop *loop = get_loop(L);
        struct rb_wait *w = t ? &t->wait : &loop->main_wait;
        set_wait(w, fds, nfds, deadline, t ? t->limit : 0);
        block_wait(L, w);
        return k(L, LUA_YIELD, ctx);
    }
    set_wait(&t->wait, fds, nfds, deadline, t->limit);
    t->state = T_WAIT_IO;
    return lua_yieldk(L, 0, ctx, k);
}

int rb_loop_wait(lua_State *L, int fd, short events, double deadline,
                 lua_KFunction k, lua_KContext ctx)
{
    struct pollfd p = { .fd = fd, .events = events, .revents = 0 };
    return rb_loop_waitv(L, &p, fd >= 0 ? 1 : 0, deadline, k, ctx);
}

enum rb_wake rb_loop_woke(lua_State *L, struct pollfd *fds, int nfds)
{
    rb_task *t = current_task(L);
    struct rb_wait *w = t ? &t->wait : &get_loop(L)->main_wait;
    for (int i = 0; fds != NULL && i < nfds && i < w->nfds; i++)
        fds[i].revents = w->fds[i].revents;
    return w->woke;
}

int rb_loop_raise(lua_State *L, enum rb_wake why, const char *who,
                  const char *what, double timeout)
{
    /* No luaL_error: its position would be the stdlib line that called the
     * primitive; runbook.errors names the runbook's own line instead. */
    char secs[32];
    switch (why) {
    case RB_WAKE_TIMEOUT:
        /* lua_pushfstring knows no precision ("%.1f"): format it here */
        snprintf(secs, sizeof secs, "%.1f", timeout);
        lua_pushfstring(L, "%s: %s timed out after %s s", who, what, secs);
        break;
    case RB_WAKE_INTERRUPT:
        lua_pushfstring(L, "%s: %s %s", who, what, rb_loop_interrupt_text());
        break;
    case RB_WAKE_CANCEL:
        lua_pushfstring(L, "%s: %s stopped: the step's timeout ran out", who, what);
        break;
    default:
        lua_pushfstring(L, "%s: %s failed", who, what);
        break;
    }
    return lua_error(L);
}

/* ---- tasks ---------------------------------------------------------- */

/* Make a task of the function and its nargs arguments on top of L's stack
 * (function first); both move to the new thread. */
static rb_task *task_new(lua_State *L, rb_loop *loop, int nargs, rb_task *parent)
{
    rb_task *t = calloc(1, sizeof *t);
    if (t == NULL)
        luaL_error(L, "runbook: out of memory");
    lua_State *co = lua_newthread(L);
    lua_insert(L, -(nargs + 2));        /* thread below fn and args */
    lua_xmove(L, co, nargs + 1);
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->co = co;
    t->loop = loop;
    t->parent = parent;
    t->nargs = nargs;
    t->state = T_READY;
    t->limit = parent ? parent->limit : 0;
    *(rb_task **)lua_getextraspace(co) = t;
    if (parent)
        parent->children++;
    t->next = loop->tasks;
    loop->tasks = t;
    return t;
}

static void task_unlink(rb_loop *loop, rb_task *t)
{
    for (rb_task **p = &loop->tasks; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            return;
        }
    }
}

/* Forget a finished task; its thread becomes garbage. */
static void task_free(lua_State *L, rb_loop *loop, rb_task *t)
{
    task_unlink(loop, t);
    *(rb_task **)lua_getextraspace(t->co) = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
    free(t);
}

static void task_finished(lua_State *L, rb_loop *loop, rb_task *t, int status)
{
    t->state = T_DONE;
    t->status = status;
    for (rb_task *c = loop->tasks; c; c = c->next) {
        if (c->parent == t) {
            c->parent = NULL;
            c->orphan = 1;
        }
    }
    if (t->orphan) {
        task_free(L, loop, t);
    } else if (t->parent != NULL) {
        rb_task *p = t->parent;
        if (--p->children == 0 && p->state == T_WAIT_CHILDREN)
            p->state = T_READY;
        task_free(L, loop, t);  /* spawned tasks report through Lua (pcall) */
    }
}

static void task_resume(lua_State *L, rb_loop *loop, rb_task *t)
{
    int nres = 0;
    int nargs = t->started ? 0 : t->nargs;
    t->started = 1;
    t->state = T_READY;
    lua_State *prev = running_task;
    running_task = t->co;
    int status = lua_resume(t->co, L, nargs, &nres);
    running_task = prev;
    lua_sethook(t->co, NULL, 0, 0);
    if (status == LUA_YIELD) {
        if (t->state == T_READY)        /* a bare coroutine.yield(): go on */
            lua_pop(t->co, nres);
        return;
    }
    task_finished(L, loop, t, status);
}

static void wake_all(rb_loop *loop, enum rb_wake why)
{
    for (rb_task *t = loop->tasks; t; t = t->next) {
        if (t->state == T_WAIT_IO) {
            t->wait.woke = why;
            t->state = T_READY;
        }
    }
}

static void resume_ready(lua_State *L, rb_loop *loop)
{
    int resumed;
    do {
        resumed = 0;
        for (rb_task *t = loop->tasks; t; t = t->next) {
            if (t->state == T_READY) {
                task_resume(L, loop, t);
                resumed = 1;
                break;          /* the list may have changed */
            }
        }
    } while (resumed);
}

/* Fill the poll set with every waiting task's fds; return their number and
 * the nearest deadline in *next (0: none). */
static int gather_waits(lua_State *L, rb_loop *loop, double *next)
{
    size_t want = 0;
    for (rb_task *t = loop->tasks; t; t = t->next)
        if (t->state == T_WAIT_IO)
            want += (size_t)t->wait.nfds;
    reserve_fds(L, loop, want);
    int n = 0;
    *next = 0;
    for (rb_task *t = loop->tasks; t; t = t->next) {
        if (t->state != T_WAIT_IO)
            continue;
        for (int i = 0; i < t->wait.nfds; i++, n++) {
            loop->pfd[n] = t->wait.fds[i];
            loop->pfd[n].revents = 0;
            loop->owner[n] = t;
        }
        if (t->wait.deadline > 0 && (*next <= 0 || t->wait.deadline < *next))
            *next = t->wait.deadline;
    }
    return n;
}

/* Make ready the tasks whose fds poll() found ready or whose deadline passed. */
static void wake_waiters(rb_loop *loop, int n)
{
    for (int i = 0; i < n; i++) {
        rb_task *t = loop->owner[i];
        if (loop->pfd[i].revents == 0)
            continue;
        for (int j = 0; j < t->wait.nfds; j++)
            if (t->wait.fds[j].fd == loop->pfd[i].fd)
                t->wait.fds[j].revents = loop->pfd[i].revents;
        t->wait.woke = RB_WAKE_READY;
        t->state = T_READY;
    }
    double now = rb_loop_now();
    for (rb_task *t = loop->tasks; t; t = t->next) {
        if (t->state == T_WAIT_IO && t->wait.deadline > 0 && now >= t->wait.deadline) {
            t->wait.woke = t->wait.capped ? RB_WAKE_CANCEL : RB_WAKE_TIMEOUT;
            t->state = T_READY;
        }
    }
}

/* One round: resume every ready task, then poll for the waiting ones. */
static void loop_step(lua_State *L, rb_loop *loop, const rb_task *target)
{
    resume_ready(L, loop);
    if (target->state == T_DONE)
        return;                 /* the run is over: do not wait for others */
    double next;
    int n = gather_waits(L, loop, &next);
    if (n == 0 && next <= 0)
        return;                 /* nothing waits on I/O (done, or children) */
    struct pollfd *sig = &loop->pfd[n];
    sig->fd = sig_pipe[0];
    sig->events = POLLIN;
    sig->revents = 0;
    int r = poll(loop->pfd, (nfds_t)n + 1, about_to_block((int)ms_until(next)));
    if (r < 0 && errno != EINTR)
        luaL_error(L, "runbook: poll failed: %s", strerror(errno));
    if (loop->pfd[n].revents)
        drain_sig_pipe();
    if (rb_loop_interrupts(L) > 0) {
        wake_all(loop, RB_WAKE_INTERRUPT);
        return;
    }
    wake_waiters(loop, n);
}

/* Tasks still alive when a run's root task ends were spawned and never
 * joined: they belong to nobody now.  Dropping them lets the collector
 * close what they hold (a child process group, a socket) instead of
 * letting them linger into later steps. */
static void free_others(lua_State *L, rb_loop *loop, const rb_task *keep)
{
    rb_task *t = loop->tasks;
    while (t != NULL) {
        rb_task *next = t->next;
        if (t != keep)
            task_free(L, loop, t);
        t = next;
    }
}

/*
 * loop.run([opts,] fn, ...) runs fn(...) as a root task and drives the loop
 * until it ends.  Returns true, results... or false, error, traceback; the
 * error is a message, or the table raised (confirm's "declined" object
 * must reach the engine as itself).
 * opts.timeout limits every wait of the task and its children.
 */
static int l_run(lua_State *L)
{
    rb_loop *loop = get_loop(L);
    if (current_task(L) != NULL)
        return luaL_error(L, "loop.run: already inside a task (use parallel)");
    double limit = 0;
    int first = 1;
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "timeout");
        limit = rb_loop_deadline(luaL_optnumber(L, -1, 0));
        lua_pop(L, 1);
        first = 2;
    }
    luaL_checktype(L, first, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - first;
    rb_task *t = task_new(L, loop, nargs, NULL);
    t->limit = limit;
    while (t->state != T_DONE)
        loop_step(L, loop, t);
    free_others(L, loop, t);
    lua_State *co = t->co;
    int status = t->status;
    int nres = lua_gettop(co);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);  /* keep co alive while we copy */
    if (status == LUA_OK) {
        lua_pushboolean(L, 1);
        luaL_checkstack(L, nres, "too many results");
        lua_xmove(co, L, nres);
        nres += 1;
    } else {
        lua_pushboolean(L, 0);
        lua_xmove(co, L, 1);
        if (!lua_isstring(L, -1) && !lua_istable(L, -1)) {
            luaL_tolstring(L, -1, NULL);
            lua_remove(L, -2);
        }
        luaL_traceback(L, co, NULL, 0);
        nres = 3;
    }
    lua_remove(L, -(nres + 1));
    task_free(L, loop, t);
    return nres;
}

/* loop.spawn(fn, ...): start a child of the running task. */
static int l_spawn(lua_State *L)
{
    rb_task *self = current_task(L);
    if (self == NULL)
        return luaL_error(L, "loop.spawn: not inside a task");
    luaL_checktype(L, 1, LUA_TFUNCTION);
    task_new(L, self->loop, lua_gettop(L) - 1, self);
    return 0;
}

/* loop.detach(fn, ...): start a task that belongs to no task: no join
 * waits for it (a `parallel` inside the step is not held up by it), and it
 * is dropped when the run's root task ends.  For a watcher that sleeps
 * beside a step (runbook.cadence); it reports nothing, so it catches its
 * own errors. */
static int l_detach(lua_State *L)
{
    rb_task *self = current_task(L);
    if (self == NULL)
        return luaL_error(L, "loop.detach: not inside a task");
    luaL_checktype(L, 1, LUA_TFUNCTION);
    task_new(L, self->loop, lua_gettop(L) - 1, NULL);
    return 0;
}

static int k_join(lua_State *L, int status, lua_KContext ctx)
{
    (void)L;
    (void)status;
    (void)ctx;
    return 0;
}

/* loop.join(): wait until every child of the running task has ended. */
static int l_join(lua_State *L)
{
    rb_task *self = current_task(L);
    if (self == NULL)
        return luaL_error(L, "loop.join: not inside a task");
    if (self->children == 0)
        return 0;
    if (!lua_isyieldable(L))
        return luaL_error(L, "loop.join: cannot wait here (not yieldable)");
    self->state = T_WAIT_CHILDREN;
    return lua_yieldk(L, 0, 0, k_join);
}

static int k_sleep(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    double seconds = lua_tonumber(L, 1);
    (void)ctx;
    enum rb_wake w = rb_loop_woke(L, NULL, 0);
    if (w == RB_WAKE_TIMEOUT)
        return 0;
    return rb_loop_raise(L, w, "wait", "sleep", seconds);
}

/* loop.sleep(seconds): a timer on the loop. */
static int l_sleep(lua_State *L)
{
    double seconds = luaL_checknumber(L, 1);
    luaL_argcheck(L, seconds >= 0, 1, "seconds must not be negative");
    lua_settop(L, 1);
    if (seconds == 0)
        seconds = 1e-9;
    return rb_loop_wait(L, -1, 0, rb_loop_deadline(seconds), k_sleep, 0);
}

static int k_readable(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    enum rb_wake w = rb_loop_woke(L, NULL, 0);
    if (w == RB_WAKE_READY || w == RB_WAKE_TIMEOUT) {
        lua_pushboolean(L, w == RB_WAKE_READY);
        return 1;
    }
    return rb_loop_raise(L, w, "wait", "input", 0);
}

/* loop.readable(fd, timeout): true when fd has input, false on timeout. */
static int l_readable(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    double timeout = luaL_optnumber(L, 2, 0);
    return rb_loop_wait(L, fd, POLLIN, rb_loop_deadline(timeout), k_readable, 0);
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, rb_loop_now());
    return 1;
}

static int l_interrupts(lua_State *L)
{
    lua_pushinteger(L, rb_loop_interrupts(L));
    return 1;
}

/* loop.ack_interrupt([n]): acknowledge n Ctrl-C presses (default: all).
 * Passing the count one looked at keeps a press that lands just after
 * the look from being lost. */
static int l_ack_interrupt(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        rb_loop_ack_interrupt(L);
        return 0;
    }
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n > 0 && n <= rb_loop_interrupts(L)) {
        if (term_pending) {
            term_pending = 0;
            n--;
        }
        sigint_acked += (sig_atomic_t)n;
    }
    return 0;
}

/* loop.terminated() -> nil, or the number and name ("SIGTERM") of the
 * signal that is ending the run. */
/* For the commands that run steps (their cmd/<name>.lua says
 * ends_on_term = true). */
static int l_catch_term(lua_State *L)
{
    (void)L;
    rb_loop_catch_term();
    return 0;
}

static int l_terminated(lua_State *L)
{
    int sig = rb_loop_terminated();
    if (sig == 0)
        return 0;
    lua_pushinteger(L, sig);
    lua_pushstring(L, rb_loop_signal_name(sig));
    return 2;
}

/* loop.shield(on): while on, SIGTERM and SIGHUP are recorded (terminated())
 * but interrupt no wait: the run's cleanup (a lock's release) must end. */
static int l_shield(lua_State *L)
{
    term_shielded = lua_toboolean(L, 1);
    return 0;
}

/* loop.interrupt_text() -> "interrupted (Ctrl-C)" or "terminated (SIGTERM)",
 * for messages about a wait that was cut short. */
static int l_interrupt_text(lua_State *L)
{
    lua_pushstring(L, rb_loop_interrupt_text());
    return 1;
}

static int l_in_task(lua_State *L)
{
    lua_pushboolean(L, current_task(L) != NULL && lua_isyieldable(L));
    return 1;
}

int luaopen_runbook_loop(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "run", l_run },
        { "spawn", l_spawn },
        { "detach", l_detach },
        { "join", l_join },
        { "sleep", l_sleep },
        { "readable", l_readable },
        { "now", l_now },
        { "interrupts", l_interrupts },
        { "ack_interrupt", l_ack_interrupt },
        { "terminated", l_terminated },
        { "catch_term", l_catch_term },
        { "interrupt_text", l_interrupt_text },
        { "shield", l_shield },
        { "in_task", l_in_task },
        { NULL, NULL },
    };
    luaL_newlib(L, funcs);
    return 1;
}
