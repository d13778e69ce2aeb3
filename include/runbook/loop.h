/*
 * The single event loop.
 *
 * Every step, every branch of a runbook's `parallel` (stdlib/runbook/api.lua,
 * over spawn and join) and every REPL evaluation runs as a task: a Lua
 * coroutine that the loop resumes.  A primitive that must wait
 * (a child process, a socket, a timer, the operator's keyboard) does not
 * block: it calls rb_loop_wait()/rb_loop_waitv() with the fds it needs and a
 * deadline, which yields the task.  The loop poll()s every waiting task's fds
 * at once and calls the primitive's continuation when one is ready, when its
 * deadline passes, when the operator presses Ctrl-C, or when the task's own
 * limit (a step timeout) runs out.  The continuation asks rb_loop_woke() why.
 *
 * A network primitive therefore plugs in like this:
 *
 *     static int k_read(lua_State *L, int status, lua_KContext ctx) {
 *         (void)status;
 *         struct conn *c = ctx_to_conn(ctx);
 *         enum rb_wake w = rb_loop_woke(L, NULL, 0);
 *         if (w != RB_WAKE_READY)
 *             return rb_loop_raise(L, w, "redis 127.0.0.1:6379", "reply", c->timeout);
 *         ...read...; if (need more) return rb_loop_wait(L, c->fd, POLLIN, c->deadline, k_read, ctx);
 *         return 1;
 *     }
 *
 * When the calling code cannot yield (the main thread, or inside a C call
 * such as table.sort's comparator), the same call blocks in a private poll()
 * on just those fds, still honouring the deadline and Ctrl-C, and then calls
 * the continuation directly.  Primitives need not care which happened.
 */
#ifndef RUNBOOK_LOOP_H
#define RUNBOOK_LOOP_H

#include <lua.h>
#include <poll.h>

#define RB_LOOP_MAXFD 8

/* Why a waiting task was resumed. */
enum rb_wake {
    RB_WAKE_READY = 0,   /* at least one fd is ready */
    RB_WAKE_TIMEOUT,     /* the wait's own deadline passed */
    RB_WAKE_INTERRUPT,   /* the operator pressed Ctrl-C, or SIGTERM/SIGHUP came */
    RB_WAKE_CANCEL       /* the task's limit passed (step timeout) */
};

/* Monotonic clock, in seconds. */
double rb_loop_now(void);

/* Absolute deadline `seconds` from now; seconds <= 0 means no deadline (0). */
double rb_loop_deadline(double seconds);

/* Create the loop for this state and store it in the registry. [-0, +0, m] */
void rb_loop_init(lua_State *L);

/* Install the SIGINT handler that wakes the loop (done by rb_loop_init);
 * SIGPIPE is ignored. */
void rb_loop_signals(lua_State *L);

/* Make SIGTERM and SIGHUP end the run instead of the process (for the
 * commands that run steps: run, repl, whose stdlib/runbook/cmd/<name>.lua
 * says ends_on_term; the others keep the default). */
void rb_loop_catch_term(void);

/* Suspend the calling C function until fd is ready for events, or the
 * deadline (absolute, rb_loop_now() scale, 0 = none) passes; then the loop
 * calls k(L, LUA_YIELD, ctx).  fd < 0 waits for the deadline alone.
 * Use as `return rb_loop_wait(...)`.  [-0, +0, e] */
int rb_loop_wait(lua_State *L, int fd, short events, double deadline,
                 lua_KFunction k, lua_KContext ctx);

/* The same for up to RB_LOOP_MAXFD fds (the array is copied). [-0, +0, e] */
int rb_loop_waitv(lua_State *L, const struct pollfd *fds, int nfds,
                  double deadline, lua_KFunction k, lua_KContext ctx);

/* How the last wait of the running code ended; copies the revents seen into
 * fds[0..nfds) when fds is not NULL. */
enum rb_wake rb_loop_woke(lua_State *L, struct pollfd *fds, int nfds);

/* Raise the standard error for a wait that did not end READY, e.g.
 * "redis 127.0.0.1:6379: reply timed out after 5.0 s" or
 * "exec sleep: interrupted (Ctrl-C)".  Never returns.  [-0, +0, v] */
int rb_loop_raise(lua_State *L, enum rb_wake why, const char *who,
                  const char *what, double timeout);

/* Number of Ctrl-C presses not yet acknowledged by rb_loop_ack_interrupt,
 * plus one for a terminating signal (SIGTERM, SIGHUP) not yet acknowledged. */
int rb_loop_interrupts(lua_State *L);

/* Forget the pending interrupts (the engine does this after asking, and
 * before the cleanup of a run that a signal ended). */
void rb_loop_ack_interrupt(lua_State *L);

/* The terminating signal (SIGTERM, SIGHUP) that is ending the run, or 0.
 * Set by the first one and never cleared: the process is to exit. */
int rb_loop_terminated(void);

/* "SIGTERM", "SIGHUP", ... for the transcript and messages. */
const char *rb_loop_signal_name(int sig);

/* How a cut-short wait is described: "interrupted (Ctrl-C)", or
 * "terminated (SIGTERM)" once a terminating signal came. */
const char *rb_loop_interrupt_text(void);

/* Have fn(ud) called once, just before the loop next blocks (a poll that
 * may wait: for I/O, a deadline, the operator), then forgotten; (NULL,
 * NULL) forgets it.  One at a time: the transcript's owed fsync
 * (rb_transcript_owe), so that nothing waits with a line not on disk. */
void rb_loop_before_block(void (*fn)(void *ud), void *ud);

/* The number of polls the loop has made so far.  Two equal readings mean
 * that nothing waited in between (no task's I/O, timer or question): only
 * computation ran.  lib_redis's liveness rule uses it. */
unsigned long rb_loop_polls(void);

/* Open the Lua module "runbook.loop": run, spawn, detach, join, sleep,
 * readable, now, interrupts, ack_interrupt, terminated, catch_term,
 * interrupt_text, shield, in_task.  [-0, +1, m] */
int luaopen_runbook_loop(lua_State *L);

#endif
