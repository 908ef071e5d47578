// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the door's configuration parser (src/door/config.c).
 *
 * Built in build-fuzz with the others (fuzz/meson.build, linking the parser's
 * own static library); run by scripts/fuzz.sh as target "door-config".
 * Corpus: fuzz/corpus/door-config/.
 *
 * Checks beyond "no crash": a parse either succeeds with every device
 * well-formed (canonical BDF, distinct, BAR rules of p2p_pci_dev_create())
 * or fails with a message "NAME:LINE: ..." and adds nothing.
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static struct door_config cfg;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	int ret;

	memset(&cfg, 0, sizeof(cfg));
	ret = door_config_parse(&cfg, (const char *)data, size, "fuzz", 1, err, sizeof(err));
	if (ret) {
		assert(cfg.n == 0);
		assert(!strncmp(err, "fuzz:", 5) || !strcmp(err, ""));
		return 0;
	}
	for (unsigned int i = 0; i < cfg.n; i++) {
		const struct door_dev *d = &cfg.devs[i];

		assert(strlen(d->bdf) == 12 && d->bdf[4] == ':' && d->bdf[7] == ':' && d->bdf[10] == '.');
		for (unsigned int j = 0; j < i; j++)
			assert(strcmp(d->bdf, cfg.devs[j].bdf));
		assert(d->group <= DOOR_MAX_GROUP);
		for (int b = 0; b < 6; b++) {
			uint64_t s = d->bar_size[b];

			assert(!s || !(s & (s - 1)));
			if (s && (d->bar_flags[b] & DOOR_BAR_MEM64))
				assert(b < 5 && !d->bar_size[b + 1]);
		}
		if (d->kind == DOOR_STORAGE)
			assert(d->file || (d->size >= 4096 && d->size % 4096 == 0));
	}
	/* Appending the same text again must fail on the first device (BDF in use). */
	if (cfg.n) {
		unsigned int n = cfg.n;

		ret = door_config_parse(&cfg, (const char *)data, size, "again", 1, err, sizeof(err));
		assert(ret && cfg.n == n);
	}
	door_config_free(&cfg);
	return 0;
}
