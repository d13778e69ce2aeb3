/*
 * sys.c: the few system verbs the Lua stdlib needs that Lua's own libraries
 * lack (directories, modes, identity, randomness).  Each is a thin wrapper
 * whose error names the path and the reason.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "runbook/host.h"

/* sys.mkdirs(path, mode) creates path and its missing parents. */
static int l_mkdirs(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    mode_t mode = (mode_t)luaL_optinteger(L, 2, 0700);
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof buf)
        return luaL_error(L, "mkdirs: path too long: %s", path);
    strcpy(buf, path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST)
                return luaL_error(L, "cannot create directory %s: %s", buf, strerror(errno));
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

/* sys.stat(path) -> {type="file"|"dir"|"other", mode=, size=, mtime=} | nil */
static int l_stat(lua_State *L)
{
    struct stat st;
    if (stat(luaL_checkstring(L, 1), &st) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, st.st_mode & 07777);
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    return 1;
}

/* sys.listdir(path) -> sorted array of entry names (no . and ..) | nil, err */
static int l_listdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (d == NULL) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    lua_newtable(L);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++n);
    }
    closedir(d);
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    return 1;
}

static int l_realpath(lua_State *L)
{
    char out[PATH_MAX];
    if (realpath(luaL_checkstring(L, 1), out) == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushstring(L, out);
    return 1;
}

/* sys.random_hex(nbytes) from getrandom(2). */
static int l_random_hex(lua_State *L)
{
    unsigned char raw[32];
    lua_Integer n = luaL_optinteger(L, 1, 8);
    luaL_argcheck(L, n > 0 && n <= (lua_Integer)sizeof raw, 1, "between 1 and 32 bytes");
    size_t nb = (size_t)n < sizeof raw ? (size_t)n : sizeof raw;
    if (getrandom(raw, nb, 0) != (ssize_t)nb)
        return luaL_error(L, "getrandom failed: %s", strerror(errno));
    char hex[65];
    for (lua_Integer i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    lua_pushlstring(L, hex, (size_t)(2 * n));
    return 1;
}

static int l_chmod(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (chmod(path, (mode_t)luaL_checkinteger(L, 2)) != 0)
        return luaL_error(L, "cannot chmod %s: %s", path, strerror(errno));
    return 0;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int l_cwd(lua_State *L)
{
    char buf[PATH_MAX];
    if (getcwd(buf, sizeof buf) == NULL)
        return luaL_error(L, "getcwd failed: %s", strerror(errno));
    lua_pushstring(L, buf);
    return 1;
}

/* sys.nofile(want) raises the soft limit on open files to want (at most
 * the hard limit; never lowers it) and returns the soft and hard limits: a
 * fan-out holds a socket or pipes per branch, and the usual soft limit of
 * 1024 (or a lower one) would fail branches with EMFILE where the hard
 * limit allows them. */
static int l_nofile(lua_State *L)
{
    lua_Integer want = luaL_checkinteger(L, 1);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return luaL_error(L, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    if (want > 0 && (rlim_t)want > rl.rlim_cur) {
        struct rlimit up = rl;
        up.rlim_cur = rl.rlim_max == RLIM_INFINITY || (rlim_t)want < rl.rlim_max ? (rlim_t)want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    lua_pushinteger(L, rl.rlim_cur == RLIM_INFINITY ? LUA_MAXINTEGER : (lua_Integer)rl.rlim_cur);
    lua_pushinteger(L, rl.rlim_max == RLIM_INFINITY ? LUA_MAXINTEGER : (lua_Integer)rl.rlim_max);
    return 2;
}

static int l_datadir(lua_State *L)
{
    lua_pushstring(L, rb_host_datadir(L));
    return 1;
}

int luaopen_runbook_sys(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "mkdirs", l_mkdirs },
        { "stat", l_stat },
        { "listdir", l_listdir },
        { "realpath", l_realpath },
        { "random_hex", l_random_hex },
        { "chmod", l_chmod },
        { "getpid", l_getpid },
        { "cwd", l_cwd },
        { "datadir", l_datadir },
        { "nofile", l_nofile },
        { NULL, NULL },
    };
    luaL_newlib(L, funcs);
    return 1;
}
