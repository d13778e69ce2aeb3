/*
 * Redaction: the one place that decides what of a string is a secret.
 * The screen (ui.print), the transcript encoder, and through them the
 * report and the REPL all go through it.
 *
 * A redactor holds the secret values of one run (secret params and
 * prompts, secret() values).  Besides those it hides, without anyone
 * marking them:
 *   - the values of keys whose names say they are secret (PASSWORD, SECRET,
 *     TOKEN, API_KEY, PRIVATE_KEY, CREDENTIALS, AUTH, COOKIE, ...) in
 *     K=V, export K=V, JSON "k": "v" and its escaped form \"k\": \"v\",
 *     "K=V" array elements, YAML and header lines k: v, --flag=V and
 *     --flag V;
 *   - token shapes: Stripe sk_/rk_ live and test keys, AWS AKIA/ASIA key
 *     ids, GitHub ghp_/gho_/ghu_/ghs_/ghr_/github_pat_, Slack xox?-, JWTs,
 *     the body of a PEM private-key block;
 *   - URL passwords (up to the last '@' of the authority) and URL query
 *     parameters with secret names (token, key, sig, X-Amz-Signature, ...).
 * Each hidden run of bytes becomes "***".
 */
#ifndef RUNBOOK_REDACT_H
#define RUNBOOK_REDACT_H

#include <stddef.h>
#include <lua.h>

typedef struct rb_redactor rb_redactor;

/* A redactor with no secrets yet; NULL when out of memory. */
rb_redactor *rb_redactor_new(void);

/* Free r and the secrets it holds; NULL is allowed. */
void rb_redactor_free(rb_redactor *r);

/* Remember a secret (copied once, however often it is added); empty values
 * are ignored.  Neither this nor a later search costs more with the number
 * of secrets held.  Returns 0, or -1 when out of memory (then every secret
 * added before is still hidden). */
int rb_redactor_add(rb_redactor *r, const char *value, size_t len);

/* The length of the longest secret added so far (0 for none or NULL): how
 * far past a cut a secret that straddles it can reach. */
size_t rb_redactor_longest(const rb_redactor *r);

/* 1 when rb_redact would change s[0..len), else 0: one pass over the
 * bytes that can start something to hide, no allocation.  r may be NULL. */
int rb_redact_needed(const rb_redactor *r, const char *s, size_t len);

/* A malloc'ed, NUL-terminated redacted copy of s[0..len), its length in
 * *outlen (may be NULL); the caller frees it.  NULL when out of memory.
 * r may be NULL (then only the rules above apply). */
char *rb_redact(const rb_redactor *r, const char *s, size_t len, size_t *outlen);

/* 1 when a member or variable named name[0..len) holds a secret
 * ("DB_PASSWORD", "apiKey", "Set-Cookie"; not "author", "PASSWORD_FILE"). */
int rb_redact_secret_name(const char *name, size_t len);

/* 1 when s is a command-line flag whose next argument is a secret
 * ("--password", "--api-key"; not "--password-stdin", "--password=x"). */
int rb_redact_secret_flag(const char *s, size_t len);

/* What an argv element of program prog hides: nothing, the next element
 * (redis-cli -a PW, sshpass -p PW), the next element after its first ':'
 * (curl -u user:PW), or this element after its two-byte flag (mysql -pPW);
 * RB_ARGV_PROGRAM: the element names a program whose flags follow
 * (sshpass -p PW ssh -p 2222: the second -p is ssh's port). */
typedef enum rb_argv_secret {
    RB_ARGV_NONE, RB_ARGV_NEXT, RB_ARGV_NEXT_PASSWORD, RB_ARGV_AFTER_FLAG, RB_ARGV_PROGRAM
} rb_argv_secret;
rb_argv_secret rb_redact_argv(const char *prog, size_t pn, const char *arg, size_t an);

/* One line of output shown line by line, through the state of a private
 * key block (*in_key, 0 at the start of a stream): the length of the
 * line's head that is a block's body, to show as "***" (0 for none, len
 * for the whole line); the rest is redacted as any text.  Updates *in_key. */
size_t rb_redact_key_line(int *in_key, const char *s, size_t len);

/* This state's redactor, created on first use and kept in the registry.
 * [-0, +0, m] */
rb_redactor *rb_redactor_of(lua_State *L);

/* Add secret(s), redact(s) and line_redactor() to the table on top of the
 * stack.  [-0, +0, m] */
void rb_redact_openlib(lua_State *L);

/* Open the Lua module "runbook.redact": secret(s), redact(s),
 * line_redactor(), what the screen, the transcript, the report and notify
 * share.  [-0, +1, m] */
int luaopen_runbook_redact(lua_State *L);

#endif
