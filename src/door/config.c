// SPDX-License-Identifier: MIT
/*
 * The door's configuration format (docs/door-config.md): parser and loader.
 *
 * Pure functions over a buffer: door_config_parse() allocates only the
 * storage file names, never reads beyond @len and reports the first
 * problem with its line.  fuzz/door_config.c fuzzes it.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

const char door_default_config[] =
	"# The p2pbuf run set (p2pbuf exec without --config)\n"
	"gpu         0000:01:00.0 group=1 bar0=16K bar2=256M,64,pf\n"
	"copy-engine 0000:02:00.0 group=2\n"
	"storage     0000:03:00.0 group=3 size=256M\n";

#define GPU_VENDOR 0x1b36
#define GPU_DEVICE 0x0110
#define GPU_CLASS 0x030200
#define MAX_BAR_SIZE (1ull << 40)
#define STORAGE_BLOCK 4096ull
#define STORAGE_DEFAULT_SIZE (256ull << 20)

const char *door_kind_name(enum door_kind kind)
{
	switch (kind) {
	case DOOR_GPU: return "gpu";
	case DOOR_COPY_ENGINE: return "copy-engine";
	case DOOR_STORAGE: return "storage";
	}
	return "?";
}

struct ctx {
	const char *name;
	unsigned int line;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 2, 3)))
static int fail(struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!c->errlen)
		return -EINVAL;
	n = snprintf(c->err, c->errlen, "%s:%u: ", c->name, c->line);
	if (n >= 0 && (size_t)n < c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Unsigned number: decimal or 0x hex, nothing else. */
static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	int base = 10;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned int d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned int)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned int)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned int)(*s - 'A' + 10);
		else
			return false;
		if (v > (UINT64_MAX - d) / (uint64_t)base)
			return false;
		v = v * (uint64_t)base + d;
	}
	*out = v;
	return true;
}

/* A size: a number, then K, M, G or T (powers of 1024), optionally "iB" or "B". */
static bool parse_size(const char *s, uint64_t *out)
{
	char num[32];
	size_t n = 0;
	unsigned int shift = 0;
	uint64_t v;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		num[n++] = *s++;
		num[n++] = *s++;
		while (isxdigit((unsigned char)*s) && n < sizeof(num) - 1)
			num[n++] = *s++;
	} else {
		while (isdigit((unsigned char)*s) && n < sizeof(num) - 1)
			num[n++] = *s++;
	}
	num[n] = 0;
	if (!parse_u64(num, &v))
		return false;
	switch (*s) {
	case 'k': case 'K': shift = 10; s++; break;
	case 'm': case 'M': shift = 20; s++; break;
	case 'g': case 'G': shift = 30; s++; break;
	case 't': case 'T': shift = 40; s++; break;
	default: break;
	}
	if (shift && *s == 'i')
		s++;
	if (*s == 'B')
		s++;
	if (*s)
		return false;
	if (shift && v > (UINT64_MAX >> shift))
		return false;
	*out = v << shift;
	return true;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* "dddd:bb:dd.f" or "bb:dd.f" (domain 0), hex, as lspci prints them. */
static bool parse_bdf(const char *s, char out[13])
{
	unsigned int dom = 0, bus, dev, fn;
	int n = -1;
	size_t len = strlen(s);

	if (len == 12) {
		if (sscanf(s, "%4x:%2x:%2x.%1x%n", &dom, &bus, &dev, &fn, &n) != 4 || n != 12)
			return false;
	} else if (len == 7) {
		if (sscanf(s, "%2x:%2x.%1x%n", &bus, &dev, &fn, &n) != 3 || n != 7)
			return false;
	} else {
		return false;
	}
	for (const char *p = s; *p; p++)
		if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
			return false;
	if (dev > 0x1f || fn > 7)
		return false;
	snprintf(out, 13, "%04x:%02x:%02x.%x", dom & 0xffff, bus & 0xff, dev & 0x1f, fn & 7);
	return true;
}

/* barN=SIZE[,64][,pf][,io] */
static int parse_bar(struct ctx *c, struct door_dev *d, int bar, const char *val)
{
	char buf[64], *save = NULL, *tok;
	uint64_t size;
	uint32_t flags = 0;

	if (strlen(val) >= sizeof(buf))
		return fail(c, "bar%d: value too long", bar);
	strcpy(buf, val);
	tok = strtok_r(buf, ",", &save);
	if (!tok || !parse_size(tok, &size))
		return fail(c, "bar%d: bad size '%s' (e.g. 16K, 256M, 0x1000)", bar, val);
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "64"))
			flags |= DOOR_BAR_MEM64;
		else if (!strcmp(tok, "pf"))
			flags |= DOOR_BAR_PREFETCH;
		else if (!strcmp(tok, "io"))
			flags |= DOOR_BAR_IO;
		else
			return fail(c, "bar%d: unknown flag '%s' (64, pf, io)", bar, tok);
	}
	if (size && !is_pow2(size))
		return fail(c, "bar%d: size %llu is not a power of two", bar, (unsigned long long)size);
	if (flags & DOOR_BAR_IO) {
		if (flags & (DOOR_BAR_MEM64 | DOOR_BAR_PREFETCH))
			return fail(c, "bar%d: an I/O BAR cannot be 64-bit or prefetchable", bar);
		if (size < 4 || size > 256)
			return fail(c, "bar%d: an I/O BAR is 4 to 256 bytes", bar);
	} else if (size) {
		if (size < 4096)
			return fail(c, "bar%d: a memory BAR is at least 4K", bar);
		if (!(flags & DOOR_BAR_MEM64) && size > (2ull << 30))
			return fail(c, "bar%d: a 32-bit BAR is at most 2G (add ,64)", bar);
		if (size > MAX_BAR_SIZE)
			return fail(c, "bar%d: at most 1T", bar);
	}
	d->bar_size[bar] = size;
	d->bar_flags[bar] = size ? flags : 0;
	return 0;
}

static int check_bars(struct ctx *c, const struct door_dev *d)
{
	for (int i = 0; i < 6; i++) {
		if (!d->bar_size[i] || !(d->bar_flags[i] & DOOR_BAR_MEM64))
			continue;
		if (i == 5)
			return fail(c, "bar5 cannot be 64-bit (it takes two BAR slots)");
		if (d->bar_size[i + 1])
			return fail(c, "bar%d is 64-bit and takes slot %d too: bar%d must be empty",
				    i, i + 1, i + 1);
	}
	return 0;
}

static int parse_line(struct ctx *c, struct door_config *cfg, char *line)
{
	char *save = NULL, *tok, *kind, *bdf;
	struct door_dev *d;
	bool bars_given = false;
	uint64_t v;
	int ret;

	kind = strtok_r(line, " \t\r\v\f", &save);
	if (!kind)
		return 0;
	if (cfg->n >= DOOR_MAX_DEVICES)
		return fail(c, "too many devices (at most %d)", DOOR_MAX_DEVICES);
	d = &cfg->devs[cfg->n];
	memset(d, 0, sizeof(*d));
	if (!strcmp(kind, "gpu"))
		d->kind = DOOR_GPU;
	else if (!strcmp(kind, "copy-engine"))
		d->kind = DOOR_COPY_ENGINE;
	else if (!strcmp(kind, "storage"))
		d->kind = DOOR_STORAGE;
	else
		return fail(c, "unknown device kind '%.40s' (gpu, copy-engine, storage)", kind);
	bdf = strtok_r(NULL, " \t\r\v\f", &save);
	if (!bdf)
		return fail(c, "%s: missing PCI address (e.g. 0000:01:00.0)", kind);
	if (!parse_bdf(bdf, d->bdf))
		return fail(c, "bad PCI address '%.40s' (DDDD:BB:DD.F, hex; device <= 1f, function <= 7)",
			    bdf);
	for (unsigned int i = 0; i < cfg->n; i++)
		if (!strcmp(cfg->devs[i].bdf, d->bdf))
			return fail(c, "%s is already used (%s)", d->bdf, cfg->devs[i].source);
	d->group = (unsigned int)strtoul(d->bdf + 5, NULL, 16); /* the bus number */
	if (d->kind == DOOR_GPU) {
		d->vendor = GPU_VENDOR;
		d->device = GPU_DEVICE;
		d->class_code = GPU_CLASS;
		d->fn_flags = DOOR_FN_HUGE;
	}
	d->size = STORAGE_DEFAULT_SIZE;

	while ((tok = strtok_r(NULL, " \t\r\v\f", &save))) {
		char *eq = strchr(tok, '=');
		const char *key = tok, *val = eq ? eq + 1 : NULL;
		bool gpu = d->kind == DOOR_GPU;

		if (eq)
			*eq = 0;
		if (!strcmp(key, "group") && val) {
			if (!parse_u64(val, &v) || v > DOOR_MAX_GROUP)
				return fail(c, "group: '%.40s' is not a number 0..%u", val,
					    DOOR_MAX_GROUP);
			d->group = (unsigned int)v;
		} else if (gpu && val && (!strcmp(key, "vendor") || !strcmp(key, "device"))) {
			if (!parse_u64(val, &v) || v > 0xffff || (!strcmp(key, "vendor") && v == 0xffff))
				return fail(c, "%s: '%.40s' is not a 16-bit id", key, val);
			if (key[0] == 'v')
				d->vendor = (uint16_t)v;
			else
				d->device = (uint16_t)v;
		} else if (gpu && val && !strcmp(key, "class")) {
			if (!parse_u64(val, &v) || v > 0xffffff)
				return fail(c, "class: '%.40s' is not a 24-bit class code (e.g. 0x030200)",
					    val);
			d->class_code = (uint32_t)v;
		} else if (gpu && val && !strncmp(key, "bar", 3) && key[3] >= '0' && key[3] <= '5' &&
			   !key[4]) {
			if (!bars_given)
				memset(d->bar_size, 0, sizeof(d->bar_size));
			bars_given = true;
			ret = parse_bar(c, d, key[3] - '0', val);
			if (ret)
				return ret;
		} else if (gpu && val && !strcmp(key, "vram")) {
			char spec[64];

			if (!bars_given)
				memset(d->bar_size, 0, sizeof(d->bar_size));
			bars_given = true;
			snprintf(spec, sizeof(spec), "%.50s,64,pf", val);
			ret = parse_bar(c, d, 2, spec);
			if (ret)
				return ret;
		} else if (gpu && !val && !strcmp(key, "nohuge")) {
			d->fn_flags &= ~DOOR_FN_HUGE;
		} else if (gpu && !val && !strcmp(key, "prefault")) {
			d->fn_flags |= DOOR_FN_PREFAULT;
		} else if (gpu && !val && !strcmp(key, "noflr")) {
			d->fn_flags |= DOOR_FN_NO_FLR;
		} else if (gpu && !val && !strcmp(key, "nodmabuf")) {
			d->fn_flags |= DOOR_FN_NO_DMABUF;
		} else if (gpu && !val && !strcmp(key, "vf")) {
			d->fn_flags |= DOOR_FN_VF;
		} else if (d->kind == DOOR_STORAGE && val && !strcmp(key, "file")) {
			if (!*val)
				return fail(c, "file: empty path");
			free(d->file);
			d->file = strdup(val);
			if (!d->file)
				return -ENOMEM;
		} else if (d->kind == DOOR_STORAGE && val && !strcmp(key, "size")) {
			if (!parse_size(val, &v) || v < STORAGE_BLOCK || v % STORAGE_BLOCK ||
			    v > MAX_BAR_SIZE)
				return fail(c, "size: '%.40s' is not a multiple of 4K between 4K and 1T",
					    val);
			d->size = v;
		} else {
			return fail(c, "%s: unknown %s '%.40s'%s", door_kind_name(d->kind),
				    val ? "key" : "word", key,
				    val ? "" : " (keys are written key=value)");
		}
	}
	if (d->kind == DOOR_GPU && !bars_given) {
		d->bar_size[0] = 16384;
		d->bar_size[2] = 256ull << 20;
		d->bar_flags[2] = DOOR_BAR_MEM64 | DOOR_BAR_PREFETCH;
	}
	if (d->kind == DOOR_GPU) {
		bool any = false;

		ret = check_bars(c, d);
		if (ret)
			return ret;
		for (int i = 0; i < 6; i++)
			any |= d->bar_size[i] != 0;
		if (!any)
			return fail(c, "gpu %s has no BAR", d->bdf);
	}
	snprintf(d->source, sizeof(d->source), "%.40s:%u", c->name, c->line);
	cfg->n++;
	return 0;
}

int door_config_parse(struct door_config *cfg, const char *text, size_t len, const char *name,
		      unsigned int first_line, char *err, size_t errlen)
{
	struct ctx c = { .name = name, .line = first_line, .err = err, .errlen = errlen };
	unsigned int n0 = cfg->n;
	size_t pos = 0;
	int ret = 0;

	if (errlen)
		err[0] = 0;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *line, *hash;

		if (memchr(text + pos, 0, ll)) {
			ret = fail(&c, "NUL byte in the line");
			break;
		}
		line = strndup(text + pos, ll);
		if (!line) {
			ret = -ENOMEM;
			break;
		}
		hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		ret = parse_line(&c, cfg, line);
		free(line);
		if (ret) {
			/* The half-parsed device: its file name only. */
			if (cfg->n < DOOR_MAX_DEVICES) {
				free(cfg->devs[cfg->n].file);
				cfg->devs[cfg->n].file = NULL;
			}
			break;
		}
		pos += ll + 1;
		c.line++;
	}
	if (ret) {
		if (ret == -ENOMEM && errlen)
			snprintf(err, errlen, "%s:%u: out of memory", name, c.line);
		while (cfg->n > n0) {
			cfg->n--;
			free(cfg->devs[cfg->n].file);
			cfg->devs[cfg->n].file = NULL;
		}
	}
	return ret;
}

void door_config_free(struct door_config *cfg)
{
	for (unsigned int i = 0; i < cfg->n; i++) {
		free(cfg->devs[i].file);
		cfg->devs[i].file = NULL;
	}
	cfg->n = 0;
}

static int read_file(const char *path, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	int fd, ret = 0;

	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *nb = cap < (1u << 24) ? realloc(buf, cap * 2) : NULL;

			if (!nb) {
				ret = cap < (1u << 24) ? -ENOMEM : -EFBIG;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			break;
		}
		if (!r)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (ret) {
		free(buf);
		return ret;
	}
	*out = buf;
	*len = n;
	return 0;
}

int door_config_read(struct door_config *cfg, const char *path, const char *extra, char *err,
		     size_t errlen)
{
	int ret;

	if (path && *path) {
		char *text = NULL;
		size_t len = 0;

		ret = read_file(path, &text, &len);
		if (ret) {
			snprintf(err, errlen, "%s: %s", path, strerror(-ret));
			return ret;
		}
		ret = door_config_parse(cfg, text, len, path, 1, err, errlen);
		free(text);
	} else {
		ret = door_config_parse(cfg, door_default_config, strlen(door_default_config),
					"(default)", 1, err, errlen);
	}
	if (!ret && extra && *extra)
		ret = door_config_parse(cfg, extra, strlen(extra), "--device", 1, err, errlen);
	if (ret)
		door_config_free(cfg);
	return ret;
}

int door_config_load(struct door_config *cfg, char *err, size_t errlen)
{
	const char *path = getenv("P2PBUF_DOOR_CONFIG"), *connect = getenv("P2PBUF_DOOR_CONNECT");

	if ((!path || !*path) && connect && *connect) {
		/* p2pbuf exec --connect without --config: no default set, the --device lines only. */
		const char *extra = getenv("P2PBUF_DOOR_DEVICES");
		int ret = 0;

		if (extra && *extra)
			ret = door_config_parse(cfg, extra, strlen(extra), "--device", 1, err, errlen);
		if (ret)
			door_config_free(cfg);
		return ret;
	}
	return door_config_read(cfg, getenv("P2PBUF_DOOR_CONFIG"), getenv("P2PBUF_DOOR_DEVICES"),
				err, errlen);
}
