/*
 * host.c: the lua_State every command shares.
 *
 * Libraries are opened from one list with luaL_requiref (as Nmap does), so
 * they live in package.loaded as "runbook.<name>" and the stdlib's Lua code
 * builds the runbook globals from them.  Built-in primitives come from a
 * list CMake generates; the network ones are C modules on package.cpath,
 * loaded on first use (see CMakeLists.txt).
 */
#include "runbook/host.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>
#include <lua-cjson.h>

#include "runbook/answers.h"
#include "runbook/loop.h"
#include "runbook/operator.h"
#include "runbook/redact.h"
#include "runbook/transcript.h"

#define RB_PRIMITIVE(name) int luaopen_runbook_##name(lua_State *L);
#include "primitives.h"
#undef RB_PRIMITIVE

static const luaL_Reg host_libs[] = {
    { "cjson", luaopen_cjson },
    { "runbook.loop", luaopen_runbook_loop },
    { "runbook.redact", luaopen_runbook_redact },
    { "runbook.transcript", luaopen_runbook_transcript },
    { "runbook.operator", luaopen_runbook_operator },
    { "runbook.answers", luaopen_runbook_answers },
    { "runbook.args", luaopen_runbook_args },
    { "runbook.sys", luaopen_runbook_sys },
#define RB_PRIMITIVE(name) { "runbook." #name, luaopen_runbook_##name },
#include "primitives.h"
#undef RB_PRIMITIVE
    { NULL, NULL },
};

void rb_class(lua_State *L, const char *name, lua_CFunction gc,
              lua_CFunction tostring, const luaL_Reg *methods)
{
    luaL_newmetatable(L, name);
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__close");
    if (tostring != NULL) {
        lua_pushcfunction(L, tostring);
        lua_setfield(L, -2, "__tostring");
    }
    if (methods != NULL) {
        lua_newtable(L);
        lua_pushvalue(L, -2);
        luaL_setfuncs(L, methods, 1);       /* upvalue 1: the metatable (rb_self) */
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

void *rb_self(lua_State *L, const char *name)
{
    void *p = lua_touserdata(L, 1);
    if (p != NULL && lua_getmetatable(L, 1)) {
        int same = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
        if (same)
            return p;
    }
    return luaL_checkudata(L, 1, name);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The directory rel, relative to the binary's parent directory, when it
 * holds probe: the installed layout (bin/runbook, share/runbook/stdlib,
 * lib/runbook/runbook/http.so).  Returns 1 with its real path in out. */
static int installed_dir(const char *rel, const char *probe, char *out)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 0;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return 0;
    *slash = '\0';
    char dir[PATH_MAX + 128], sub[PATH_MAX + 256];
    snprintf(dir, sizeof dir, "%s/../%s", exe, rel);
    snprintf(sub, sizeof sub, "%s/%s", dir, probe);
    return is_dir(sub) && realpath(dir, out) != NULL;
}

/* $env when set, else the installed directory, else fallback (the build's
 * own); out holds PATH_MAX bytes. */
static void find_dir(const char *env, const char *rel, const char *probe,
                     const char *fallback, char *out)
{
    const char *v = getenv(env);
    if (v != NULL && *v != '\0')
        snprintf(out, PATH_MAX, "%s", v);
    else if (!installed_dir(rel, probe, out))
        snprintf(out, PATH_MAX, "%s", fallback);
}

/* stdlib/ and runbooks/ ($RUNBOOK_DATADIR), and the network primitives'
 * C modules, runbook/<name>.so ($RUNBOOK_MODDIR).  A binary that is not
 * installed uses the source tree it was built from and its build's lib/. */
static void find_datadir(char *out)
{
    int source = is_dir(RB_SOURCE_DIR "/stdlib") || !is_dir(RB_INSTALL_DATADIR "/stdlib");
    find_dir("RUNBOOK_DATADIR", "share/runbook", "stdlib",
             source ? RB_SOURCE_DIR : RB_INSTALL_DATADIR, out);
}

static void find_moddir(char *out)
{
    find_dir("RUNBOOK_MODDIR", RB_INSTALL_MODDIR_REL "/runbook", "runbook", RB_BUILD_MODDIR, out);
}

const char *rb_host_datadir(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "runbook.datadir");
    const char *dir = lua_tostring(L, -1);
    lua_pop(L, 1);
    return dir;
}

/* Lua unloads C modules (dlclose) when the state closes.  Unloading libpq
 * that way takes libssl out from under OpenSSL's process-wide state, which
 * then points at unmapped code (LeakSanitizer reports it), and it gains
 * nothing: the state closes just before the process exits.  So the table
 * of loaded C libraries (registry._CLIBS, Lua 5.4's loadlib.c) loses its
 * finaliser, and modules stay loaded until exit. */
static void keep_c_modules_loaded(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, "_CLIBS") == LUA_TTABLE && lua_getmetatable(L, -1)) {
        lua_pushnil(L);
        lua_setfield(L, -2, "__gc");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Lua 5.4's dump (ldump.c) is a fixed header, the main function's upvalue
 * count (one byte), then its source name: a size+1 varint, 7 bits a byte
 * with the top bit set on the last one, and the bytes, or size 0 (no
 * name) in a stripped dump; nested functions name no source of their own
 * and inherit it.  Sets *name and *tail to where that name starts and
 * ends; 0 when buf is not a dump in the format of this liblua. */
static int dump_name(const char *buf, size_t n, size_t *name, size_t *tail)
{
    const size_t head = 4 + 1 + 1 + 6 + 3 + sizeof(lua_Integer) + sizeof(lua_Number) + 1;
    const unsigned version = (LUA_VERSION_NUM / 100) * 16 + LUA_VERSION_NUM % 100;
    if (n <= head || memcmp(buf, LUA_SIGNATURE, 4) != 0 || (unsigned char)buf[4] != version)
        return 0;
    size_t len = 0, i = head;
    unsigned char b;
    do {
        if (i >= n || len > n)
            return 0;
        b = (unsigned char)buf[i++];
        len = (len << 7) | (b & 0x7f);
    } while (!(b & 0x80));
    if (len != 0 && len - 1 > n - i)
        return 0;
    *name = head;
    *tail = len == 0 ? i : i + len - 1;
    return 1;
}

/* The varint of dump_name for x into out (16 bytes); returns its length. */
static size_t dump_size(unsigned char *out, size_t x)
{
    unsigned char rev[16];
    size_t n = 0, k = 0;
    do {
        rev[n++] = x & 0x7f;
        x >>= 7;
    } while (x != 0);
    while (n > 0)
        out[k++] = rev[--n];
    out[k - 1] |= 0x80;
    return k;
}

struct pieces {
    const char *p[4];
    size_t n[4];
    int i;
};

static const char *read_pieces(lua_State *L, void *ud, size_t *size)
{
    struct pieces *r = ud;
    (void)L;
    while (r->i < 4 && r->n[r->i] == 0)
        r->i++;
    if (r->i == 4) {
        *size = 0;
        return NULL;
    }
    *size = r->n[r->i];
    return r->p[r->i++];
}

/* Load the bytecode in buf as the chunk "@src".  The build compiled it
 * from the source tree; naming the .lua that was found instead (the
 * installed one, say) keeps every error and traceback pointing at the
 * file and line a reader opens.  LUA_OK, or an error on the stack. */
static int load_dump(lua_State *L, const char *buf, size_t n, const char *src)
{
    size_t name, tail;
    if (!dump_name(buf, n, &name, &tail)) {
        lua_pushliteral(L, "not a dump of this Lua");
        return LUA_ERRSYNTAX;
    }
    char chunk[PATH_MAX + 520];
    snprintf(chunk, sizeof chunk, "@%s", src);
    size_t clen = strlen(chunk);
    unsigned char varint[16];
    struct pieces r = { { buf, (const char *)varint, chunk, buf + tail },
                        { name, dump_size(varint, clen + 1), clen, n - tail }, 0 };
    return lua_load(L, read_pieces, &r, chunk, "b");
}

/* The bytecode of src, when bc is at least as new as src (an edit the
 * build has not compiled yet wins), as a loaded chunk.  Returns 1 with the
 * chunk pushed, 0 with nothing pushed. */
static int load_bytecode(lua_State *L, const char *bc, const char *src, const struct stat *st)
{
    int fd = open(bc, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat bst;
    int fresh = fstat(fd, &bst) == 0 && S_ISREG(bst.st_mode) && bst.st_size > 0 &&
        (bst.st_mtim.tv_sec > st->st_mtim.tv_sec ||
         (bst.st_mtim.tv_sec == st->st_mtim.tv_sec && bst.st_mtim.tv_nsec >= st->st_mtim.tv_nsec));
    char *buf = fresh ? lua_newuserdatauv(L, (size_t)bst.st_size, 0) : NULL;
    ssize_t got = buf != NULL ? read(fd, buf, (size_t)bst.st_size) : -1;
    close(fd);
    if (got != bst.st_size) {
        if (buf != NULL)
            lua_pop(L, 1);
        return 0;
    }
    int status = load_dump(L, buf, (size_t)got, src);
    lua_remove(L, -2);
    if (status != LUA_OK)
        lua_pop(L, 1);
    return status == LUA_OK;
}

/* package.searchers[2]: a module of stdlib/ (upvalue 1 the data dir,
 * upvalue 2 the bytecode dir, "" for none), from its bytecode when it is
 * current, else from the .lua, opened once (Lua's own searcher opens a
 * file to find it and again to load it).  A name not in stdlib/ is left
 * to the searchers after it. */
static int search_stdlib(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *dir = lua_tostring(L, lua_upvalueindex(1));
    const char *bcdir = lua_tostring(L, lua_upvalueindex(2));
    char rel[256];
    if (strlen(name) >= sizeof rel || strstr(name, "..") != NULL || strchr(name, '/') != NULL)
        return 0;
    for (size_t i = 0; (rel[i] = name[i] == '.' ? '/' : name[i]) != '\0'; i++)
        ;
    static const char *const forms[] = { "%s/stdlib/%s.lua", "%s/stdlib/%s/init.lua" };
    static const char *const bcforms[] = { "%s/%s.luac", "%s/%s/init.luac" };
    for (int f = 0; f < 2; f++) {
        char src[PATH_MAX + 512], bc[PATH_MAX + 512];
        struct stat st;
        snprintf(src, sizeof src, forms[f], dir, rel);
        if (stat(src, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        snprintf(bc, sizeof bc, bcforms[f], bcdir, rel);
        if ((bcdir[0] == '\0' || !load_bytecode(L, bc, src, &st)) &&
            luaL_loadfilex(L, src, NULL) != LUA_OK)
            return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                              name, src, lua_tostring(L, -1));
        lua_pushstring(L, src);
        return 2;
    }
    return 0;
}

/* Put search_stdlib second in package.searchers, after package.preload
 * (package on the top of the stack).  The bytecode of the source tree is
 * the build's; an installed stdlib has its own beside it.  The bytecode
 * has no line numbers (src/luac.c): RUNBOOK_STDLIB_SOURCE=1 loads the
 * sources, for a traceback through the stdlib that names its lines. */
static void add_stdlib_searcher(lua_State *L, const char *dir)
{
    const char *source = getenv("RUNBOOK_STDLIB_SOURCE");
    lua_pushstring(L, dir);
    if (source != NULL && strcmp(source, "1") == 0)
        lua_pushliteral(L, "");
    else if (strcmp(dir, RB_SOURCE_DIR) == 0)
        lua_pushstring(L, RB_BUILD_BYTECODE_DIR);
    else
        lua_pushfstring(L, "%s/bytecode", dir);
    lua_pushcclosure(L, search_stdlib, 2);
    lua_getfield(L, -2, "searchers");
    for (lua_Integer i = luaL_len(L, -1); i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_rotate(L, -2, 1);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 1);
}

void rb_host_open(lua_State *L)
{
    luaL_openlibs(L);
    keep_c_modules_loaded(L);
    rb_loop_init(L);
    for (const luaL_Reg *lib = host_libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 0);
        lua_pop(L, 1);
    }
    char dir[PATH_MAX];
    find_datadir(dir);
    char real[PATH_MAX];
    if (realpath(dir, real) != NULL)
        snprintf(dir, sizeof dir, "%s", real);
    lua_pushstring(L, dir);
    lua_setfield(L, LUA_REGISTRYINDEX, "runbook.datadir");

    /* stdlib/ first, so a runbook cannot shadow runbook.* by accident. */
    /* Only our own directories: LUA_PATH and LUA_CPATH are not consulted. */
    char moddir[PATH_MAX];
    find_moddir(moddir);
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/stdlib/?.lua;%s/stdlib/?/init.lua", dir, dir);
    lua_setfield(L, -2, "path");
    lua_pushfstring(L, "%s/?.so", moddir);
    lua_setfield(L, -2, "cpath");
    add_stdlib_searcher(L, dir);
    lua_pop(L, 1);

    lua_newtable(L);
    lua_pushstring(L, RB_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, dir);
    lua_setfield(L, -2, "datadir");
    lua_setfield(L, LUA_REGISTRYINDEX, "runbook.hostinfo");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, LUA_REGISTRYINDEX, "runbook.hostinfo");
    lua_setfield(L, -2, "runbook.host");
    lua_pop(L, 1);
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int rb_host_pcall(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "runbook: internal error: %s\n", msg ? msg : "(no message)");
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

int rb_host_main(lua_State *L, int argc, char **argv)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "runbook.cli");
    if (rb_host_pcall(L, 1, 1) != LUA_OK)
        return RB_EXIT_USAGE;
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    if (rb_host_pcall(L, 1, 1) != LUA_OK)
        return RB_EXIT_FAILED;
    int rc = (int)luaL_optinteger(L, -1, RB_EXIT_OK);
    lua_pop(L, 1);
    return rc;
}
