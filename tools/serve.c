// SPDX-License-Identifier: MIT
/*
 * p2pbuf serve: the configured devices served over vfio-user, one Unix
 * socket each (DIR/<BDF>), until SIGINT or SIGTERM (docs/vfio-user.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "cli.h"
#include "config.h"

static void serve_usage(FILE *f)
{
	fprintf(f, "usage: p2pbuf serve [--config FILE] --socket-dir DIR [--revoke-timeout-ms N]\n"
		   "\n"
		   "Serve each configured device (the door's configuration format; without\n"
		   "--config the embedded default set of `p2pbuf run`) to vfio-user clients on\n"
		   "the Unix socket DIR/<BDF>.  One line per socket is printed when it is ready.\n"
		   "SIGINT or SIGTERM disconnect the clients, unlink the sockets and exit 0.\n"
		   "\n"
		   "  --config FILE            device configuration (docs/door-config.md)\n"
		   "  --socket-dir DIR         where the sockets go (must exist)\n"
		   "  --revoke-timeout-ms N    how long a revoke waits for a client's ack before\n"
		   "                           disconnecting it (default 1000)\n");
}

static uint32_t serve_bar_flags(uint32_t door)
{
	return ((door & DOOR_BAR_MEM64) ? P2P_BAR_MEM64 : 0) |
	       ((door & DOOR_BAR_PREFETCH) ? P2P_BAR_PREFETCH : 0) |
	       ((door & DOOR_BAR_IO) ? P2P_BAR_IO : 0);
}

static int serve_create(const struct door_dev *d, struct p2p_pci_dev **out)
{
	struct p2p_pci_dev_info info = {
		.argsz = sizeof(info),
		.name = d->bdf,
		.vendor_id = d->vendor,
		.device_id = d->device,
		.class_code = d->class_code,
		.group = d->group,
	};

	switch (d->kind) {
	case DOOR_COPY_ENGINE:
		return p2p_copy_engine_create(d->bdf, NULL, d->group, out);
	case DOOR_STORAGE:
		return p2p_storage_create(d->bdf, NULL, d->group, d->file, d->file ? 0 : d->size, out);
	case DOOR_GPU:
		break;
	}
	info.flags = ((d->fn_flags & DOOR_FN_VF) ? P2P_PCI_VF : 0) |
		     ((d->fn_flags & DOOR_FN_NO_FLR) ? P2P_PCI_NO_FLR : 0) |
		     ((d->fn_flags & DOOR_FN_NO_DMABUF) ? P2P_PCI_NO_DMABUF : 0) |
		     ((d->fn_flags & DOOR_FN_HUGE) ? P2P_PCI_HUGE : 0);
	for (int i = 0; i < 6; i++) {
		info.bars[i].size = d->bar_size[i];
		info.bars[i].flags = serve_bar_flags(d->bar_flags[i]);
	}
	return p2p_pci_dev_create(&info, out);
}

int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket-dir", required_argument, NULL, 's' },
		{ "revoke-timeout-ms", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct door_config cfg;
	struct p2p_pci_dev *pdev[DOOR_MAX_DEVICES] = { 0 };
	struct p2p_vfio_user_server_info info = { .argsz = sizeof(info) };
	struct p2p_vfio_user_server *srv = NULL;
	const char *config = NULL, *dir = NULL;
	char err[512];
	sigset_t set;
	int c, ret, sig, rc = 1;

	while ((c = getopt_long(argc, argv, "c:s:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 's':
			dir = optarg;
			break;
		case 't': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (*end || end == optarg || !v || v > 600000) {
				fprintf(stderr, "p2pbuf serve: --revoke-timeout-ms: 1..600000\n");
				return 2;
			}
			info.revoke_timeout_ms = (uint32_t)v;
			break;
		}
		case 'h':
			serve_usage(stdout);
			return 0;
		default:
			serve_usage(stderr);
			return 2;
		}
	}
	if (!dir || optind != argc) {
		serve_usage(stderr);
		return 2;
	}
	ret = door_config_read(&cfg, config, NULL, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "p2pbuf serve: %s\n", ret == -ENOMEM ? "out of memory" : err);
		return 2;
	}
	/* Signals are taken synchronously by this thread; every other thread blocks them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	ret = p2p_vfio_user_server_create(&info, &srv);
	if (ret) {
		fprintf(stderr, "p2pbuf serve: %s\n", p2p_strerror(ret));
		goto out;
	}
	for (unsigned int i = 0; i < cfg.n; i++) {
		const struct door_dev *d = &cfg.devs[i];
		char path[PATH_MAX];

		ret = serve_create(d, &pdev[i]);
		if (ret) {
			fprintf(stderr, "p2pbuf serve: %s: %s %s: %s\n", d->source,
				door_kind_name(d->kind), d->bdf, p2p_strerror(ret));
			goto out;
		}
		if (snprintf(path, sizeof(path), "%s/%s", dir, d->bdf) >= (int)sizeof(path)) {
			fprintf(stderr, "p2pbuf serve: socket path too long\n");
			goto out;
		}
		ret = p2p_vfio_user_server_add(srv, pdev[i], path);
		if (ret) {
			fprintf(stderr, "p2pbuf serve: %s: %s\n", path, p2p_strerror(ret));
			goto out;
		}
		printf("p2pbuf serve: %s %s on %s\n", door_kind_name(d->kind), d->bdf, path);
		fflush(stdout);
	}
	do
		sig = sigwaitinfo(&set, NULL);
	while (sig < 0 && errno == EINTR);
	rc = 0;
out:
	p2p_vfio_user_server_destroy(srv);
	for (unsigned int i = 0; i < cfg.n; i++)
		if (pdev[i])
			p2p_pci_dev_put(pdev[i]);
	door_config_free(&cfg);
	return rc;
}
