/*
 * Unit tests for src/redact.c: each rule hides what it must (as real
 * commands print it: env, .env files, pm2/docker/kubectl JSON, YAML,
 * command lines, URLs), what must stay visible stays, rb_redact_needed
 * agrees with rb_redact on every case, and the Lua line redactor hides a
 * private key's body line by line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "runbook/redact.h"
#include "runbook/transcript.h"

#define CHECK(cond, ...) do { if (!(cond)) fail_msg(__VA_ARGS__); } while (0)

/* in -> want, and rb_redact_needed says 1 exactly when in changes. */
static void expect_n(const rb_redactor *r, const char *in, size_t len, const char *want)
{
    size_t n = 0;
    char *out = rb_redact(r, in, len, &n);
    int changed = n != len || memcmp(out, in, len) != 0;

    CHECK(out != NULL, "expected a redacted copy of \"%s\"", in);
    CHECK(n == strlen(want) && memcmp(out, want, n) == 0,
          "expected \"%s\" -> \"%s\", got \"%s\"", in, want, out);
    CHECK(rb_redact_needed(r, in, len) == changed,
          "rb_redact_needed(\"%s\") should be %d (rb_redact %s it)", in, changed,
          changed ? "changes" : "keeps");
    free(out);
}

static void expect(const char *in, const char *want)
{
    expect_n(NULL, in, strlen(in), want);
}

static void stays(const char *in)
{
    expect(in, in);
}

/* ---- secrets registered by the run ------------------------------------ */

static void test_registered_secrets_overlapping(void **state)
{
    rb_redactor *r = rb_redactor_new();
    (void)state;

    /* "abc" is added first and is inside "xxabcxx": the longer must still vanish whole. */
    rb_redactor_add(r, "abc", 3);
    rb_redactor_add(r, "xxabcxx", 7);
    rb_redactor_add(r, "tok3n", 5);
    expect_n(r, "val xxabcxx and abc, tok3n.", 27, "val *** and ***, ***.");
    expect_n(r, "abcabc", 6, "***");
    expect_n(r, "tok3nabc!", 9, "***!");
    rb_redactor_add(r, "", 0);
    CHECK(rb_redactor_add(r, "zzz", 3) == 0, "expected add to succeed");
    expect_n(r, "nothing to hide here", 20, "nothing to hide here");
    rb_redactor_free(r);
}

static void test_registered_secret_binary_and_long(void **state)
{
    rb_redactor *r = rb_redactor_new();
    const char in[] = "a\0sec\0ret\0b";          /* the secret holds a NUL */
    size_t n, big = 1 << 20, w = 0;
    char *out, *huge = malloc(big), *want = malloc(big);
    (void)state;

    rb_redactor_add(r, "sec\0ret", 7);
    out = rb_redact(r, in, sizeof in - 1, &n);
    CHECK(n == 7 && memcmp(out, "a\0***\0b", 8) == 0, "expected a\\0***\\0b (7 bytes), got %zu bytes", n);
    free(out);
    /* 1 MiB of filler with the secret every 4 KiB */
    for (size_t i = 0; i < big; i++) {
        if (i % 4096 == 100 && i + 7 <= big) {
            memcpy(huge + i, "sec\0ret", 7);
            memcpy(want + w, "***", 3);
            w += 3;
            i += 6;
            continue;
        }
        huge[i] = want[w++] = (char)('a' + i % 26);
    }
    out = rb_redact(r, huge, big, &n);
    CHECK(n == w && memcmp(out, want, w) == 0 && out[n] == '\0',
          "expected %zu redacted bytes, NUL-terminated, got %zu", w, n);
    free(out);
    free(huge);
    free(want);
    rb_redactor_free(r);
}

/* ---- many secrets: the index ------------------------------------------ */

/* What the old list of secrets did, as the reference: every occurrence of
 * every secret, overlaps included, is one run of "***". */
static size_t reference_redact(const char *const *sec, size_t nsec, const char *s, size_t len, char *out)
{
    unsigned char mask[256] = { 0 };
    size_t o = 0;

    for (size_t k = 0; k < nsec; k++) {
        size_t sl = strlen(sec[k]);
        for (size_t i = 0; sl && i + sl <= len; i++)
            if (memcmp(s + i, sec[k], sl) == 0)
                memset(mask + i, 1, sl);
    }
    for (size_t i = 0; i < len; i++) {
        if (!mask[i])
            out[o++] = s[i];
        else if (i == 0 || !mask[i - 1]) {
            memcpy(out + o, "***", 3);
            o += 3;
        }
    }
    return o;
}

static void expect_s(const rb_redactor *r, const char *in, const char *want)
{
    expect_n(r, in, strlen(in), want);
}

static void test_secret_that_is_a_prefix_of_another(void **state)
{
    rb_redactor *r = rb_redactor_new();
    (void)state;

    /* the shorter first, then longer ones down the same path, and the
     * other way round: each length 4k and 4k + 1..3 */
    rb_redactor_add(r, "abcd", 4);
    rb_redactor_add(r, "abcdefghijkl", 12);
    rb_redactor_add(r, "abcdef", 6);
    rb_redactor_add(r, "abcdefgh", 8);
    rb_redactor_add(r, "abcdefghi", 9);
    expect_s(r, "abcdefghijklm", "***m");
    expect_s(r, "abcdefghijk", "***jk");
    expect_s(r, "abcdefg", "***g");
    expect_s(r, "abcd-abc", "***-abc");
    expect_s(r, "xabcdefghix", "x***x");
    rb_redactor_free(r);

    r = rb_redactor_new();
    rb_redactor_add(r, "0123456789", 10);
    rb_redactor_add(r, "01234567", 8);
    rb_redactor_add(r, "0123", 4);
    expect_s(r, "[0123456789]", "[***]");
    expect_s(r, "[012345678]", "[***8]");
    expect_s(r, "[01234]", "[***4]");
    expect_s(r, "[012]", "[012]");
    rb_redactor_free(r);
}

static void test_secrets_of_exactly_four_bytes(void **state)
{
    rb_redactor *r = rb_redactor_new();
    (void)state;

    rb_redactor_add(r, "wxyz", 4);
    rb_redactor_add(r, "zzzz", 4);
    expect_s(r, "wxyz", "***");
    expect_s(r, "a wxyz", "a ***");
    expect_s(r, "wxyzwxyz b", "*** b");
    expect_s(r, "wxy xyz", "wxy xyz");
    expect_s(r, "zzzzz", "***");               /* two overlapping occurrences, one run */
    expect_s(r, "wxyzz zzz", "***z zzz");
    CHECK(rb_redactor_add(r, "wxyz", 4) == 0, "adding a value twice should succeed");
    expect_s(r, "1wxyz2", "1***2");
    rb_redactor_free(r);
}

/* 5,000 lines of a .pgpass-like file: all start with the same 22 bytes,
 * many share more, and some are prefixes of others. */
static void test_many_secrets_sharing_a_prefix(void **state)
{
    rb_redactor *r = rb_redactor_new();
    char buf[64], text[256];
    (void)state;

    for (unsigned i = 0; i < 5000; i++) {
        int n = snprintf(buf, sizeof buf, "db.prod.internal:5432:app_%u:svc", i);
        CHECK(rb_redactor_add(r, buf, (size_t)n) == 0, "expected add %u to succeed", i);
        CHECK(rb_redactor_add(r, buf, (size_t)n) == 0, "expected the second add of %u to succeed", i);
    }
    expect_s(r, "db.prod.internal:5432:app_4999:svc", "***");
    expect_s(r, "a db.prod.internal:5432:app_17:svc b", "a *** b");
    expect_s(r, "db.prod.internal:5432:app_17:svcdb.prod.internal:5432:app_1:svc!", "***!");
    /* a near miss of every line stays: the shared prefix alone is no secret */
    expect_s(r, "db.prod.internal:5432:app_5000:svc", "db.prod.internal:5432:app_5000:svc");
    expect_s(r, "db.prod.internal:5432:app_12:sv", "db.prod.internal:5432:app_12:sv");
    int n = snprintf(text, sizeof text, "log db.prod.internal:5432:app_7:svc, db.prod.internal:5432:app_700:sv");
    expect_n(r, text, (size_t)n, "log ***, db.prod.internal:5432:app_700:sv");
    rb_redactor_free(r);
}

static unsigned next_rand(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 16;
}

/* A random secret over two letters, 1 to 40 bytes; half of them start
 * with a piece of an earlier one, so they share long prefixes, nest and
 * end inside each other's paths at every offset. */
static size_t random_secret(unsigned *seed, char (*store)[48], size_t k)
{
    size_t sl = 1 + next_rand(seed) % 40, from = 0;

    if (k > 0 && next_rand(seed) % 2) {
        const char *prev = store[next_rand(seed) % k];
        from = next_rand(seed) % (strlen(prev) + 1);
        if (from > sl)
            from = sl;
        memcpy(store[k], prev, from);
    }
    for (size_t i = from; i < sl; i++)
        store[k][i] = "ab"[next_rand(seed) % 2];
    store[k][sl] = '\0';
    return sl;
}

/* A text of pieces of the secrets and of noise ('c' is in none). */
static size_t random_text(unsigned *seed, const char *const *sec, size_t nsec, char *text, size_t max)
{
    size_t len = 0, want = next_rand(seed) % max;

    while (len < want) {
        const char *piece = next_rand(seed) % 3 ? sec[next_rand(seed) % nsec] : "cab";
        size_t pl = strlen(piece), cut = next_rand(seed) % (pl + 1);
        if (next_rand(seed) % 2)
            cut = pl;                       /* whole, so most texts hold a secret */
        for (size_t i = 0; i < cut && len < want; i++)
            text[len++] = piece[i];
        if (len < want && next_rand(seed) % 2)
            text[len++] = "abc"[next_rand(seed) % 3];
    }
    return len;
}

/* Random secrets and texts (so secrets overlap, nest and share prefixes
 * at every length) against the reference. */
static void test_index_matches_the_reference(void **state)
{
    unsigned seed = 7;
    char store[40][48], text[200], want[800];
    const char *sec[40];
    (void)state;

    for (int round = 0; round < 500; round++) {
        rb_redactor *r = rb_redactor_new();
        size_t nsec = 1 + next_rand(&seed) % 40;
        for (size_t k = 0; k < nsec; k++) {
            size_t sl = random_secret(&seed, store, k);
            sec[k] = store[k];
            CHECK(rb_redactor_add(r, store[k], sl) == 0, "expected add to succeed");
        }
        for (int t = 0; t < 20; t++) {
            size_t len = random_text(&seed, sec, nsec, text, sizeof text);
            size_t w = reference_redact(sec, nsec, text, len, want);
            want[w] = '\0';
            expect_n(r, text, len, want);
        }
        rb_redactor_free(r);
    }
}

/* 100,000 secrets (a result of that many values): the one added last is
 * still found, inside a longer text, and so is the first. */
static void test_hundred_thousand_secrets(void **state)
{
    rb_redactor *r = rb_redactor_new();
    char buf[64], text[160];
    int n = 0;
    (void)state;

    for (unsigned i = 0; i < 100000; i++) {
        n = snprintf(buf, sizeof buf, "tok_%08x%u", i * 2654435761u, i);
        CHECK(rb_redactor_add(r, buf, (size_t)n) == 0, "expected add %u to succeed", i);
    }
    int t = snprintf(text, sizeof text, "last=%s, first tok_000000000 end", buf);
    expect_n(r, text, (size_t)t, "last=***, first *** end");
    /* the last one but its last byte is no secret */
    buf[n - 1] = '\0';
    memcpy(text, buf, (size_t)n);
    expect_n(r, text, (size_t)n - 1, buf);
    rb_redactor_free(r);
}

/* ---- secret-named keys ------------------------------------------------- */

static void test_key_value_lines(void **state)
{
    (void)state;
    expect("DB_PASSWORD=hunter2", "DB_PASSWORD=***");
    expect("export API_KEY=abc123def", "export API_KEY=***");
    expect("DB_PASS=x1y2", "DB_PASS=***");
    expect("GITHUB_TOKEN='tok en'", "GITHUB_TOKEN='***'");
    expect("SECRET_KEY_BASE=\"a b c\"", "SECRET_KEY_BASE=\"***\"");
    /* env prints a value with blanks unquoted: the whole line's value goes */
    expect("HOME=/root\nMYSQL_ROOT_PASSWORD=correct horse\nPATH=/usr/bin\n",
           "HOME=/root\nMYSQL_ROOT_PASSWORD=***\nPATH=/usr/bin\n");
    expect("AUTH=basic-xyz\nAUTH_TOKEN=abc\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI\n",
           "AUTH=***\nAUTH_TOKEN=***\nAWS_SECRET_ACCESS_KEY=***\n");
    expect("STRIPE_PRIVATE_KEY=k1\nSESSION_KEY=k2\nACCESS_KEY=k3\nAPIKEY=k4\nDB_CREDENTIALS=k5\n",
           "STRIPE_PRIVATE_KEY=***\nSESSION_KEY=***\nACCESS_KEY=***\nAPIKEY=***\nDB_CREDENTIALS=***\n");
    expect("apiKey=xyz\r\nclientSecret=abc\r\ndbPass=p\r\n", "apiKey=***\r\nclientSecret=***\r\ndbPass=***\r\n");
    expect("  - DB_PASSWORD=composed", "  - DB_PASSWORD=***");
    expect("    | MYSQL_PASSWORD=correct horse\n    | PORT=1", "    | MYSQL_PASSWORD=***\n    | PORT=1");
    expect("mypassword=x stays hidden", "mypassword=***");
    expect("password = \"lua table\"", "password = \"***\"");
}

/* cat /proc/PID/environ: entries separated by NUL bytes */
static void test_key_value_nul_separated(void **state)
{
    const char in[] = "PATH=/bin\0DB_PASSWORD=x\0HOME=/", want[] = "PATH=/bin\0DB_PASSWORD=***\0HOME=/";
    size_t n;
    char *out = rb_redact(NULL, in, sizeof in - 1, &n);
    (void)state;

    CHECK(out && n == sizeof want - 1 && memcmp(out, want, n) == 0,
          "expected the NUL-separated DB_PASSWORD hidden, got %zu bytes: %s", n, out ? out : "(null)");
    free(out);
}

static void test_key_value_inline(void **state)
{
    (void)state;
    expect("host=db user=u password=s3cret dbname=x", "host=db user=u password=*** dbname=x");
    expect("PASSWORD='a b c' port=5432", "PASSWORD='***' port=5432");
    expect("run with TOKEN=abc and go", "run with TOKEN=*** and go");
    expect("mysql --user=root --password=hunter2 db", "mysql --user=root --password=*** db");
    stays("host=db password= nothing");
    stays("if password == other then");
    stays("password != ''");
}

static void test_json_members(void **state)
{
    (void)state;
    expect("{\"password\": \"hunter2\", \"user\": \"bob\"}", "{\"password\": \"***\", \"user\": \"bob\"}");
    expect("{\"env\":{\"DB_PASSWORD\":\"p4ss\",\"PORT\":\"3000\"}}",
           "{\"env\":{\"DB_PASSWORD\":\"***\",\"PORT\":\"3000\"}}");
    expect("{\"api_key\": 12345, \"n\": 1}", "{\"api_key\": ***, \"n\": 1}");
    expect("{\"token\" : \"a\\\"b\", \"x\": 1}", "{\"token\" : \"***\", \"x\": 1}");
    expect("{'password': 'py repr'}", "{'password': '***'}");
    /* kubectl get secret -o json of a TLS, an ssh-auth and a registry secret */
    expect("\"data\": {\"tls.crt\": \"LS0tQ1JU\", \"tls.key\": \"LS0tS0VZ\", \"ssh-privatekey\": \"AAAA\","
           " \".dockerconfigjson\": \"eyJhdXRocyI6e30=\"}",
           "\"data\": {\"tls.crt\": \"LS0tQ1JU\", \"tls.key\": \"***\", \"ssh-privatekey\": \"***\","
           " \".dockerconfigjson\": \"***\"}");
    /* JSON's own words say nothing secret */
    stays("{\"password_set\": true, \"auth\": null, \"secret\": false}");
    /* a structure under a secret-named key is walked, not hidden whole */
    expect("{\"credentials\": {\"user\": \"u\", \"password\": \"p\"}}",
           "{\"credentials\": {\"user\": \"u\", \"password\": \"***\"}}");
}

static void test_json_escaped_inside_a_string(void **state)
{
    (void)state;
    /* kubectl's last-applied-configuration, pm2's nested env */
    expect("{\"a\": \"{\\\"password\\\":\\\"hunter2\\\",\\\"user\\\":\\\"bob\\\"}\"}",
           "{\"a\": \"{\\\"password\\\":\\\"***\\\",\\\"user\\\":\\\"bob\\\"}\"}");
    /* an escaped quote inside the nested value is part of it */
    expect("\"{\\\"password\\\":\\\"a\\\\\\\"b\\\"}\"", "\"{\\\"password\\\":\\\"***\\\"}\"");
    expect("\"{\\\"api_key\\\": 42}\"", "\"{\\\"api_key\\\": ***}\"");
}

static void test_key_value_as_json_string(void **state)
{
    (void)state;
    /* docker inspect's Env */
    expect("\"Env\": [\"DB_PASSWORD=hunter 2\", \"PATH=/usr/bin\"]",
           "\"Env\": [\"DB_PASSWORD=***\", \"PATH=/usr/bin\"]");
    expect("\"[\\\"API_TOKEN=abc\\\",\\\"X=1\\\"]\"", "\"[\\\"API_TOKEN=***\\\",\\\"X=1\\\"]\"");
    expect("'SECRET=a b'", "'SECRET=***'");
}

static void test_yaml_and_headers(void **state)
{
    (void)state;
    expect("database:\n  host: db.internal\n  password: hunter2\n  user: app\n",
           "database:\n  host: db.internal\n  password: ***\n  user: app\n");
    expect("  api_key: 'abc def'\n", "  api_key: '***'\n");
    expect("- name: x\n  secret: \"s3\"\n", "- name: x\n  secret: \"***\"\n");
    expect("data:\n  password: cGFzc3dvcmQ=\n", "data:\n  password: ***\n");
    expect("Authorization: Bearer abc.def", "Authorization: ***");
    expect("Set-Cookie: sid=abc; Path=/; HttpOnly\nset-cookie: b=2", "Set-Cookie: ***\nset-cookie: ***");
    expect("< Cookie: a=b\n< Server: nginx", "< Cookie: ***\n< Server: nginx");
    expect("curl -H \"Authorization: Bearer abc\" -H 'X-Api-Key: k1' http://h/",
           "curl -H \"Authorization: ***\" -H 'X-Api-Key: ***' http://h/");
    expect("[db]\npassword = hunter2\n# token = t0k\n", "[db]\npassword = ***\n# token = ***\n");

}

/* ---- token shapes ------------------------------------------------------ */

static void test_token_shapes(void **state)
{
    (void)state;
    expect("key sk_live_4eC39HqLyjWDarjtT1zdp7dc here", "key sk_live_*** here");
    expect("sk_test_4eC39HqLyjWD rk_live_abcdefghij", "sk_test_*** rk_live_***");
    expect("id AKIAIOSFODNN7EXAMPLE.", "id AKIA***.");
    expect("ASIAY34FZKBOKMUTVV7A", "ASIA***");
    expect("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_***");
    expect("gho_16C7e42F292c6912E7710 ghs_16C7e42F292c6912E7710", "gho_*** ghs_***");
    expect("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "github_pat_***");
    expect("xoxb-123456789012-abcdefghijkl", "xoxb-***");
    expect("xoxp-1234567890-abc", "xoxp-***");
    expect("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
           "Bearer *** ok");
}

static void test_token_lookalikes_stay(void **state)
{
    (void)state;
    stays("AKIAIOSFODNN7EXAMPLEX is 21 characters");
    stays("task_live_update and desk_test_run");
    stays("xoxb- short");
    stays("eyJhbGciOiJIUzI1NiJ9 alone is only a header");
    stays("eyes.open.wide");
}

static void test_pem_private_key(void **state)
{
    (void)state;
    expect("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAbCd\n-----END RSA PRIVATE KEY-----\n",
           "-----BEGIN RSA PRIVATE KEY-----\n***\n-----END RSA PRIVATE KEY-----\n");
    expect("-----BEGIN OPENSSH PRIVATE KEY-----\r\nb3Bl\r\n-----END OPENSSH PRIVATE KEY-----",
           "-----BEGIN OPENSSH PRIVATE KEY-----\r\n***\r\n-----END OPENSSH PRIVATE KEY-----");
    /* in a JSON text the line breaks are the two characters \n */
    expect("\"pem\": \"-----BEGIN PRIVATE KEY-----\\nMIIE\\nabc\\n-----END PRIVATE KEY-----\\n\"",
           "\"pem\": \"-----BEGIN PRIVATE KEY-----\\n***\\n-----END PRIVATE KEY-----\\n\"");
    /* cut off before its END: the rest is hidden */
    expect("-----BEGIN EC PRIVATE KEY-----\nMHcC\nAQEE", "-----BEGIN EC PRIVATE KEY-----\n***");
    stays("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    stays("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n");
}

/* ---- URLs -------------------------------------------------------------- */

static void test_url_userinfo(void **state)
{
    (void)state;
    expect("postgres://u:pw@h/db", "postgres://u:***@h/db");
    expect("postgres://app:p@ss@db:5432/x", "postgres://app:***@db:5432/x");
    expect("connect redis://:s3cr:et@127.0.0.1:6379 now", "connect redis://:***@127.0.0.1:6379 now");
    expect("a+b.c-d://user:p@h x://v:w@y", "a+b.c-d://user:***@h x://v:***@y");
    stays("http://host:8080/path?to=a@b");
    stays("{\"url\":\"http://h:80\",\"to\":\"ops@example.com\"}");
    stays("ftp://anon@host and ://u:p@h");
}

static void test_url_query_parameters(void **state)
{
    (void)state;
    expect("https://api.example.com/v1?access_token=abc123&page=2",
           "https://api.example.com/v1?access_token=***&page=2");
    expect("https://s3.amazonaws.com/b/o?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F2024&X-Amz-Signature=deadbeef",
           "https://s3.amazonaws.com/b/o?X-Amz-Credential=***&X-Amz-Signature=***");
    expect("http://h/?key=abc&sig=def&token=t&api_key=k&password=p&secret=s&client_secret=c&signature=g",
           "http://h/?key=***&sig=***&token=***&api_key=***&password=***&secret=***&client_secret=***&signature=***");
    expect("GET /cb?code=x1&state=ok HTTP/1.1", "GET /cb?code=***&state=ok HTTP/1.1");
    stays("https://example.com/search?q=passenger&page=2&sort=author");
}

/* ---- command lines ----------------------------------------------------- */

static void test_flag_with_separate_value(void **state)
{
    (void)state;
    expect("mysql --user root --password hunter2 --host db", "mysql --user root --password *** --host db");
    expect("x --token abc --api-key def --client-secret ghi --auth-token jkl --secret 'm n'",
           "x --token *** --api-key *** --client-secret *** --auth-token *** --secret '***'");
    stays("docker login --password-stdin -u bob");
    stays("tool --password-file /run/pw --user bob");
    stays("tool --password --next");
}

static void test_names_and_flags(void **state)
{
    (void)state;
    const char *secret[] = { "password", "DB_PASSWORD", "passwd", "DB_PASS", "pass", "secret",
        "client_secret", "API_KEY", "apikey", "apiKey", "PRIVATE_KEY", "credentials", "AUTH",
        "auth_token", "accessToken", "ACCESS_KEY", "session_key", "Set-Cookie", "cookie",
        "Authorization", "Proxy-Authorization", "x-api-key", "passphrase", "X-Hub-Signature-256", NULL };
    const char *plain[] = { "author", "Author", "keyboard", "passenger", "PassengerName", "bypass",
        "compass", "monkey", "key", "primary_key", "PWD", "OLDPWD", "user", "host", "port",
        "PASSWORD_FILE", "SECRET_NAME", "TOKEN_URL", "max_tokens", "authority", "isAuthenticated", NULL };

    for (const char **p = secret; *p; p++)
        CHECK(rb_redact_secret_name(*p, strlen(*p)), "expected \"%s\" to name a secret", *p);
    for (const char **p = plain; *p; p++)
        CHECK(!rb_redact_secret_name(*p, strlen(*p)), "expected \"%s\" not to name a secret", *p);
    CHECK(rb_redact_secret_flag("--password", 10), "--password is a secret flag");
    CHECK(rb_redact_secret_flag("--api-key", 9), "--api-key is a secret flag");
    CHECK(!rb_redact_secret_flag("--password=x", 12), "--password=x carries its value");
    CHECK(!rb_redact_secret_flag("--password-stdin", 16), "--password-stdin takes no value");
    CHECK(!rb_redact_secret_flag("password", 8), "a word is no flag");
    CHECK(!rb_redact_secret_flag("--author", 8), "--author is no secret flag");
}

/* ---- what must stay visible -------------------------------------------- */

static void test_ordinary_text_stays(void **state)
{
    (void)state;
    stays("");
    stays("nothing secret here");
    stays("host=db.internal port=5432 user=app dbname=orders");
    stays("author: Jane Doe\nAuthor=Jane\nkeyboard: us\npassenger=3\nmonkey: 1\nbypass=1");
    stays("commit 3f786850e387550fdab836ed7d6dc881de23001b");
    stays("request_id=6f1c2a9e-1234-4b7e-9d2f-1a2b3c4d5e6f");
    stays("/var/lib/postgresql/15/main/pg_wal/000000010000000000000001");
    stays("PWD=/home/app\nOLDPWD=/\nTOKEN_URL=https://auth.example.com/token\n");
    stays("PASSWORD_FILE=/run/secrets/db\nSECRET_NAME=db-creds\nmax_tokens: 4096\n");
    stays("12:30:45 db:5432 Active: active (running) since 2026-12-01T20:58:52.833Z");
    stays("isAuthenticated: true\nauthority: ca.example.com\n2 passengers\n");
    stays("{\"name\":\"api\",\"pm_id\":0,\"status\":\"online\",\"user\":\"app\",\"PORT\":\"3000\"}");
    stays("-rw------- 1 root root 1679 Dec  1 20:58 /etc/ssl/private/key.pem");
    stays("exit status 0 -- all done --verbose");
    /* prose and printed tables, not YAML, header or config lines */
    stays("redis: NOAUTH (the server requires a password: put :PASSWORD@ before the host)");
    stays("ssh: failed (tried key /tmp/x/id_pass: cannot be used: wrong passphrase)");
    stays("{ token = \"x-1\" }");
    stays("@auth=[\"OK\"]");
}

/* ---- robustness -------------------------------------------------------- */

/* Every prefix of texts full of rule triggers, and random texts over an
 * alphabet of them, each in a buffer of its exact size (so the sanitizer
 * build sees any read past the end): redaction never fails, never grows a
 * text more than "***" per byte, and rb_redact_needed agrees with it. */
static void check_consistent(const char *text, size_t len)
{
    char *copy = malloc(len ? len : 1);
    size_t n;

    memcpy(copy, text, len);
    char *out = rb_redact(NULL, copy, len, &n);
    CHECK(out != NULL && n <= 3 * len + 3, "redact of %zu bytes failed or grew to %zu", len, n);
    int changed = n != len || memcmp(out, copy, len) != 0;
    CHECK(rb_redact_needed(NULL, copy, len) == changed,
          "rb_redact_needed disagrees with rb_redact on \"%.*s\"", (int)len, copy);
    free(out);
    free(copy);
}


/* Every prefix of each text, then 20000 random texts of up to 95 bytes
 * drawn from alphabet (each checked in an exact-size buffer). */
static void check_prefixes_and_random(const char *const *texts, const char *alphabet, size_t n,
                                      unsigned seed)
{
    char buf[96];

    for (const char *const *t = texts; *t; t++)
        for (size_t len = 0; len <= strlen(*t); len++)
            check_consistent(*t, len);
    for (int round = 0; round < 20000; round++) {
        size_t len = (seed = seed * 1103515245u + 12345u) % sizeof buf;
        for (size_t i = 0; i < len; i++)
            buf[i] = alphabet[((seed = seed * 1103515245u + 12345u) >> 16) % n];
        check_consistent(buf, len);
    }
}

static void test_truncated_and_random_texts(void **state)
{
    static const char *texts[] = {
        "export DB_PASSWORD=\"a b\"\n", "{\"a\": \"{\\\"token\\\":\\\"x\\\\\\\"y\\\"}\"}",
        "-----BEGIN RSA PRIVATE KEY-----\\nAAA\\n-----END RSA PRIVATE KEY-----",
        "postgres://app:p@ss@db:5432/x?sig=1&key=2", "--password hunter2 --api-key k",
        "sk_live_4eC39HqLyjWDarjt ghp_16C7e42F292c6912E7710c8 github_pat_11ABCDEFG0123456789_ab",
        "AKIAIOSFODNN7EXAMPLE xoxb-123456789012 eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIx.dozjgNryP4J3j",
        "  password: 'x'\n< Set-Cookie: a=b\n'k'", NULL };
    static const char alphabet[] = "=:-_Axe\"'\\\n {}[]@/?&;.#<>yJKIASkpasword_tokenBEGIN PRIVATE KEY";
    (void)state;
    check_prefixes_and_random(texts, alphabet, sizeof alphabet - 1, 12345u);
}

/* ---- the Lua functions ------------------------------------------------- */

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();

    luaL_openlibs(L);
    luaL_requiref(L, "runbook.transcript", luaopen_runbook_transcript, 0);
    lua_setglobal(L, "T");
    return L;
}

static void run_lua(lua_State *L, const char *code)
{
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("expected the Lua chunk to pass, got: %s", lua_tostring(L, -1));
}

static void test_lua_redact_uses_the_rules(void **state)
{
    lua_State *L = new_state();
    (void)state;

    run_lua(L,
        "assert(T.redact('DB_PASSWORD=x') == 'DB_PASSWORD=***', T.redact('DB_PASSWORD=x'))\n"
        "T.secret('hunter22')\n"
        "assert(T.redact('a hunter22 b') == 'a *** b', 'registered secret')\n"
        "assert(T.redact('plain') == 'plain' and T.redact(7) == 7, 'plain stays')\n");
    lua_close(L);
}

/* A string with nothing to hide comes back as the very same string (no
 * copy), also with many secrets held; one with something comes back new. */
static void test_lua_redact_returns_a_clean_string_itself(void **state)
{
    lua_State *L = new_state();
    (void)state;

    run_lua(L, "for i = 1, 20000 do T.secret(('line %05d of a secret file'):format(i)) end\n"
               "clean = ('status ok, nothing to see; '):rep(2000)\n"
               "dirty = clean .. 'line 19999 of a secret file'\n");
    const char *names[] = { "clean", "dirty" };
    for (int k = 0; k < 2; k++) {
        lua_getglobal(L, "T");
        lua_getfield(L, -1, "redact");
        lua_getglobal(L, names[k]);
        const void *in = lua_topointer(L, -1);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK)
            fail_msg("expected redact to pass, got: %s", lua_tostring(L, -1));
        CHECK((lua_topointer(L, -1) == in) == (k == 0), "expected the %s string %s", names[k],
              k == 0 ? "returned as it is" : "replaced by a redacted copy");
        lua_pop(L, 2);
    }
    run_lua(L, "assert(T.redact(dirty) == clean .. '***', 'the last secret hidden')");
    lua_close(L);
}

static void test_lua_line_redactor_hides_key_body(void **state)
{
    lua_State *L = new_state();
    (void)state;

    run_lua(L,
        "local lr = T.line_redactor()\n"
        "local got = {}\n"
        "for _, l in ipairs({ 'key follows', '-----BEGIN RSA PRIVATE KEY-----', 'MIIEowIBAAKCAQEA',\n"
        "    'b3BlbnNzaC1rZXk', '', '-----END RSA PRIVATE KEY-----', 'DB_PASSWORD=x', 'after' }) do\n"
        "  got[#got + 1] = lr:line(l)\n"
        "end\n"
        "local want = { 'key follows', '-----BEGIN RSA PRIVATE KEY-----', '***', '***', '',\n"
        "    '-----END RSA PRIVATE KEY-----', 'DB_PASSWORD=***', 'after' }\n"
        "for i = 1, #want do\n"
        "  assert(got[i] == want[i], ('line %d: expected %q, got %q'):format(i, want[i], got[i]))\n"
        "end\n"
        "local other = T.line_redactor()\n"
        "assert(other:line('MIIEowIBAAKCAQEA') == 'MIIEowIBAAKCAQEA', 'each redactor has its own state')\n"
        "local one = T.line_redactor()\n"
        "assert(one:line('-----BEGIN PRIVATE KEY-----\\nAAA\\n-----END PRIVATE KEY-----') ==\n"
        "  '-----BEGIN PRIVATE KEY-----\\n***\\n-----END PRIVATE KEY-----', 'a whole block in one line')\n"
        "assert(one:line('MIIE') == 'MIIE', 'a closed block leaves the next line alone')\n");
    lua_close(L);
}

/* ---- what a newcomer's drill on a PM2 stack found shown ---------------- */

/* cat ecosystem.config.js: a JavaScript object literal, the key unquoted,
 * the value quoted, anywhere in a line */
static void test_javascript_object_literal(void **state)
{
    (void)state;
    expect("    env: { DB_PASSWORD: 'drillpw_Xk29', PORT: 3000 },",
           "    env: { DB_PASSWORD: '***', PORT: 3000 },");
    expect("{ name: 'api', password: \"x\" }", "{ name: 'api', password: \"***\" }");
    expect("apps: [{ name: 'api', env: {SESSION_SECRET:'s3'} }]", "apps: [{ name: 'api', env: {SESSION_SECRET:'***'} }]");
    expect("  \"DB_PASSWORD\": 'x',\n  API_TOKEN: \"t\\\"q\",\n", "  \"DB_PASSWORD\": '***',\n  API_TOKEN: \"***\",\n");
    expect("{ apiKey: 'it\\'s long', user: 'bob' }", "{ apiKey: '***', user: 'bob' }");
    /* the neighbours: names that hold no secret, unquoted values */
    stays("    env: { NODE_ENV: 'production', PORT: 3000, author: 'jane', keyboard: 'us' },");
    stays("    env: { DB_PASSWORD: process.env.DB_PASSWORD, PORT: 3000 },");
    stays("{ name: 'api', script: 'server.js', time: '12:30', passenger: \"3\" }");
}

/* k: 'v' inside a line: a quoted value is a value, an unquoted one prose */
static void test_quoted_value_inside_a_line(void **state)
{
    (void)state;
    expect("login failed: bad password: 'hunter2' for bob", "login failed: bad password: '***' for bob");
    expect("config error, token: \"abc def\" is expired", "config error, token: \"***\" is expired");
    expect("{\"msg\": \"the secret: \\\"s1\\\" was rotated\"}", "{\"msg\": \"the secret: \\\"***\\\" was rotated\"}");
    stays("the server requires a password: put it in the URL");
    stays("error: token: none given, author: 'jane', host: 'db'");
}

static void test_xml_elements(void **state)
{
    (void)state;
    expect("<password>drill-Pw</password>", "<password>***</password>");
    expect("  <secret>s 1</secret>\n  <apiKey>k1</apiKey>\n", "  <secret>***</secret>\n  <apiKey>***</apiKey>\n");
    expect("<db><user>app</user><password>p</password></db>", "<db><user>app</user><password>***</password></db>");
    expect("<ns:password enc=\"no\">p</ns:password>", "<ns:password enc=\"no\">***</ns:password>");
    expect("<token><![CDATA[a<b]]></token>", "<token><![CDATA[***]]></token>");
    /* as JSON may carry it, with the close tag's slash escaped */
    expect("{\"xml\": \"<password>p<\\/password>\"}", "{\"xml\": \"<password>***<\\/password>\"}");
    stays("<author>Jane</author><keyboard>us</keyboard><user>bob</user>");
    stays("<passwordFile>/run/secrets/db</passwordFile>");
    stays("usage: vault login <token> [options]");
    stays("<password/> <password></password> <password>x</pass>");
    stays("<input type=\"password\" name=\"password\">");
}

static void test_command_line_flags(void **state)
{
    (void)state;
    expect("redis-cli -h 127.0.0.1 -p 6379 -a redisPw ping", "redis-cli -h 127.0.0.1 -p 6379 -a *** ping");
    expect("/usr/bin/redis-cli --pass 'r p' --no-auth-warning", "/usr/bin/redis-cli --pass '***' --no-auth-warning");
    expect("mysql -uroot -pmyPw orders", "mysql -uroot -p*** orders");
    expect("mysqldump --password=dumpPw db; mariadb -p'q w' db", "mysqldump --password=*** db; mariadb -p'***' db");
    expect("curl -fsS -u admin:curlPw https://h/", "curl -fsS -u admin:*** https://h/");
    expect("curl --user admin:p:w https://h/ && curl --user='bob:x y' -U px:proxyPw h",
           "curl --user admin:*** https://h/ && curl --user='bob:***' -U px:*** h");
    expect("sshpass -p sshPw ssh -p 2222 app@h", "sshpass -p *** ssh -p 2222 app@h");
    expect("sshpass -psshPw scp f h:", "sshpass -p*** scp f h:");
    expect("docker exec -u app cache redis-cli -a pw1", "docker exec -u app cache redis-cli -a ***");
    expect("sh -c 'redis-cli -a pw2 info'", "sh -c 'redis-cli -a *** info'");
    /* the same letters in other commands, or with no secret after them */
    stays("psql -h db -p 5432 -U app orders");
    stays("ssh -p 2222 app@h; grep -a needle file | sudo -u postgres psql -p 5433");
    stays("mysql -p orders; mysql -u root -p -h db");
    stays("curl -u admin https://h/ ; curl -fsS https://h/status");
    stays("redis-cli -h h -p 6379 ping | grep -a PONG");
    stays("redis-cli -a --no-auth-warning; tar -xpf a.tar; kubectl exec -it p -- sh -c 'ls -a /tmp'");
    stays("app 1042 /usr/bin/node /srv/app/server.js -p 3000 -a -u app");
    stays("sshpass -f /run/pw ssh -p 2222 app@h; curl -s -u : https://h/");
}

/* The flag's command is found by walking back over its line: a long line
 * of flags, another command between, and a line break each decide. */
static void test_command_of_a_flag_on_long_lines(void **state)
{
    size_t n = 4000 * 6 + 64;
    char *line = malloc(n), *want = malloc(n);
    (void)state;

    for (int round = 0; round < 3; round++) {
        const char *head = round == 1 ? "redis-cli ssh " : "redis-cli ";
        size_t o = (size_t)snprintf(line, n, "%s", head);
        for (int k = 0; k < 4000; k++)
            o += (size_t)snprintf(line + o, n - o, "-h hh ");
        if (round == 2)
            line[o - 1] = '\n';
        memcpy(want, line, o);
        snprintf(line + o, n - o, "-a pw-%d", round);
        snprintf(want + o, n - o, round == 0 ? "-a ***" : "-a pw-%d", round);
        expect(line, want);
    }
    free(line);
    free(want);
}

static void test_new_rules_truncated_and_random_texts(void **state)
{
    static const char *texts[] = {
        "env: { DB_PASSWORD: 'x\\'y', token: \"a\\\"b\" }", "<ns:password a=\"b\"><![CDATA[x]]></ns:password>",
        "{\"x\":\"<apiKey>k<\\/apiKey>\"}", "redis-cli -h h -a 'p w' | mysql -uroot -p\"q\" db",
        "curl --user 'u:p' -U a:b --proxy-user=c:d && sshpass -pX ssh -p 2", "\"-a\" \"pw\" '-p' 'x'", NULL };
    static const char alphabet[] = "<>/:'\"\\ -apuU{}[],=|;&\nredis-cli mysql curl sshpass passwordsecret![CDATA[]]";
    (void)state;
    check_prefixes_and_random(texts, alphabet, sizeof alphabet - 1, 424242u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registered_secrets_overlapping),
        cmocka_unit_test(test_registered_secret_binary_and_long),
        cmocka_unit_test(test_secret_that_is_a_prefix_of_another),
        cmocka_unit_test(test_secrets_of_exactly_four_bytes),
        cmocka_unit_test(test_many_secrets_sharing_a_prefix),
        cmocka_unit_test(test_index_matches_the_reference),
        cmocka_unit_test(test_hundred_thousand_secrets),
        cmocka_unit_test(test_key_value_lines),
        cmocka_unit_test(test_key_value_nul_separated),
        cmocka_unit_test(test_key_value_inline),
        cmocka_unit_test(test_json_members),
        cmocka_unit_test(test_json_escaped_inside_a_string),
        cmocka_unit_test(test_key_value_as_json_string),
        cmocka_unit_test(test_yaml_and_headers),
        cmocka_unit_test(test_token_shapes),
        cmocka_unit_test(test_token_lookalikes_stay),
        cmocka_unit_test(test_pem_private_key),
        cmocka_unit_test(test_url_userinfo),
        cmocka_unit_test(test_url_query_parameters),
        cmocka_unit_test(test_flag_with_separate_value),
        cmocka_unit_test(test_names_and_flags),
        cmocka_unit_test(test_ordinary_text_stays),
        cmocka_unit_test(test_truncated_and_random_texts),
        cmocka_unit_test(test_lua_redact_uses_the_rules),
        cmocka_unit_test(test_lua_redact_returns_a_clean_string_itself),
        cmocka_unit_test(test_lua_line_redactor_hides_key_body),
        cmocka_unit_test(test_javascript_object_literal),
        cmocka_unit_test(test_quoted_value_inside_a_line),
        cmocka_unit_test(test_xml_elements),
        cmocka_unit_test(test_command_line_flags),
        cmocka_unit_test(test_command_of_a_flag_on_long_lines),
        cmocka_unit_test(test_new_rules_truncated_and_random_texts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
