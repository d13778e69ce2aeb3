/*
 * The answers file (--answers FILE): questions answered ahead of time, for
 * rehearsals and CI.  One answer a line:
 *
 *     # comment
 *     [approve] Has the incident lead approved restoring the database? = yes
 *     [restore] !error = retry
 *     Which replica? = replica-2
 *
 * `[step-id]` limits a line to that step (its `id`, by default made from
 * its title: "Stop the backend" is stop-the-backend);
 * without it, or with `[*]`, the line answers in any step.  The question is
 * the text exactly as the runbook asks it, surrounding blanks trimmed; the
 * answer follows the last " = " on the line.  `!error` answers the
 * retry/skip/abort question after a failed step.  When several lines match
 * the same step and question, they are used in file order and the last one
 * keeps answering.  A step-specific line wins over an any-step line.
 */
#ifndef RUNBOOK_ANSWERS_H
#define RUNBOOK_ANSWERS_H

#include <stddef.h>
#include <lua.h>

typedef struct rb_answers rb_answers;

/* An answers file is written by hand: one larger than this, or with a
 * longer line, is a mistake (--answers /dev/zero), refused with its bound. */
#define RB_ANSWERS_FILE_MAX ((size_t)1 << 20)
#define RB_ANSWERS_LINE_MAX ((size_t)64 << 10)

/* Load a file; NULL with "FILE:LINE: what is wrong" in err on failure
 * (also when it is over RB_ANSWERS_FILE_MAX or a line over RB_ANSWERS_LINE_MAX). */
rb_answers *rb_answers_load(const char *path, char *err, size_t errlen);

/* Parse text already in memory; `name` is used in error messages. */
rb_answers *rb_answers_parse(const char *name, const char *text,
                             char *err, size_t errlen);

/* The next answer for this step (id or NULL) and question, or NULL.
 * Advances past that line unless it is the last one that matches. */
const char *rb_answers_next(rb_answers *a, const char *step_id,
                            const char *question);

/* Number of answer lines loaded. */
int rb_answers_count(const rb_answers *a);

void rb_answers_free(rb_answers *a);

/* Open the Lua module "runbook.answers": load(path) -> handle with
 * :next(step_id, question) -> answer | nil.  [-0, +1, m] */
int luaopen_runbook_answers(lua_State *L);

#endif
