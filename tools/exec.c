// SPDX-License-Identifier: MIT
/*
 * p2pbuf exec [--config FILE] [--device SPEC]... [--connect SOCKET]... [-q] [--] PROGRAM [ARGS]
 *
 * Runs PROGRAM with libp2pbuf-preload.so (the kernel-uAPI door,
 * docs/door.md): the configuration is checked here first (a bad one is one
 * line naming the line and the problem, exit 2), what this user cannot do
 * is said on stderr, then LD_PRELOAD gets the library appended and PROGRAM
 * runs in a child.  This process stays as its parent to guarantee that the
 * door's temporary trees go, however PROGRAM ends: every door process
 * makes its tree under a directory of ours ($P2PBUF_DOOR_TMPDIR); we
 * forward the signals a user sends us, wait for PROGRAM, remove the trees
 * whose owner is gone (kill -9 included), and end as PROGRAM did: its exit
 * status, or death by the same signal.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "cli.h"
#include "config.h"
#include "device.h"
#include "preflight.h"

#ifndef P2PBUF_LIBDIR
#define P2PBUF_LIBDIR "/usr/local/lib"
#endif
#define PRELOAD_NAME "libp2pbuf-preload.so"

static void exec_usage(FILE *f)
{
	fprintf(f,
		"usage: p2pbuf exec [--config FILE] [--device SPEC]... [--connect SOCKET]... [-q] [--]\n"
		"                   PROGRAM [ARGS]\n"
		"\n"
		"Run PROGRAM unmodified on p2pbuf's emulated devices: /dev/vfio, /dev/iommu,\n"
		"/dev/dma_heap and the sysfs VFIO users read answer as Linux's, through an\n"
		"LD_PRELOAD library (man p2pbuf-exec, docs/door.md).\n"
		"\n"
		"  --config FILE   the devices, one a line (docs/door-config.md); without it the\n"
		"                  p2pbuf run set: gpu 0000:01:00.0 (256 MiB BAR2), copy-engine\n"
		"                  0000:02:00.0, storage 0000:03:00.0, each in its own IOMMU group\n"
		"  --device SPEC   one more device, a config line (e.g. \"gpu 0000:04:00.0 vram=1G\")\n"
		"  --connect SOCKET  a device served by a vfio-user server (p2pbuf serve's\n"
		"                  DIR/BDF): it appears under /dev/vfio and sysfs as the others,\n"
		"                  backed by the server; with --connect and no --config, no\n"
		"                  default set (the --device lines only)\n"
		"  -q, --quiet     do not print what this user cannot do\n"
		"\n"
		"PROGRAM runs as a child of p2pbuf exec, which forwards SIGINT, SIGTERM, SIGHUP,\n"
		"SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH to it and removes the door's temporary\n"
		"files when it ends, however it ends.\n"
		"\n"
		"Exit status: PROGRAM's (killed by a signal: p2pbuf exec dies of the same one);\n"
		"2 for a bad configuration or usage; 126/127 if PROGRAM cannot be run.\n");
}

/* The preload library: $P2PBUF_PRELOAD, next to this binary in the build tree, or libdir. */
int cli_find_preload(char *out, size_t len)
{
	const char *env = getenv("P2PBUF_PRELOAD");
	char self[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		snprintf(out, len, "%s", env);
		return access(out, R_OK) ? -errno : 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		snprintf(out, len, "%s/../src/door/" PRELOAD_NAME, dirname(self));
		if (!access(out, R_OK))
			return 0;
	}
	snprintf(out, len, "%s/" PRELOAD_NAME, P2PBUF_LIBDIR);
	return access(out, R_OK) ? -ENOENT : 0;
}

/* PROGRAM as execvp(3) finds it, for the static-binary check. */
static bool which(const char *prog, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char *dup, *save = NULL;

	if (strchr(prog, '/')) {
		snprintf(out, len, "%s", prog);
		return true;
	}
	dup = strdup(path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *d = dup ? strtok_r(dup, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/%s", *d ? d : ".", prog);
		if (!access(out, X_OK)) {
			free(dup);
			return true;
		}
	}
	free(dup);
	return false;
}

/* An ELF executable without PT_INTERP is static: LD_PRELOAD never reaches it. */
static bool is_static_elf(const char *path)
{
	Elf64_Ehdr eh;
	bool interp = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr)) {
		close(fd);
		return false;
	}
	for (unsigned int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;

		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) != (ssize_t)sizeof(ph))
			break;
		interp |= ph.p_type == PT_INTERP;
	}
	close(fd);
	return !interp;
}

/* ---------------------------------------------------------------------- */
/* PROGRAM as our child                                                    */

/* Forwarded to PROGRAM when sent to us. */
static const int fwd_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };
static volatile pid_t child_pid;

static void forward(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	/*
	 * The terminal signals its whole foreground group, PROGRAM included
	 * (SI_KERNEL): it has its own already.  PROGRAM signalling us is not
	 * sent back to it.
	 */
	if (si->si_code == SI_KERNEL || si->si_pid == child_pid || child_pid <= 0)
		return;
	kill(child_pid, sig);
}

/*
 * The trees under @dir ("p2pbuf-door-PID-XXXXXX") whose owner is gone,
 * then @dir if that empties it.  A process still running (a background
 * job that outlived PROGRAM) keeps its tree, and removes it at its exit.
 */
static void remove_trees(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(dir);

	while (d && (e = readdir(d))) {
		long pid;

		if (strncmp(e->d_name, "p2pbuf-door-", 12))
			continue;
		pid = strtol(e->d_name + 12, NULL, 10);
		if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		door_tree_remove(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

/* Run argv[0] as our child; return its exit status, or die as it died. */
static int run_child(char **argv, const char *tree_dir)
{
	struct sigaction sa = { .sa_sigaction = forward, .sa_flags = SA_SIGINFO | SA_RESTART };
	struct sigaction prev[sizeof(fwd_signals) / sizeof(fwd_signals[0])];
	sigset_t block, old;
	int status, sig, err;
	pid_t pid;

	/*
	 * Descendants orphaned by PROGRAM come to us, so that their zombies
	 * are reaped (a zombie's pid is still "alive") before the trees go.
	 */
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(fwd_signals) / sizeof(fwd_signals[0]); i++)
		sigaddset(&block, fwd_signals[i]);
	sigprocmask(SIG_BLOCK, &block, &old);
	sigfillset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(fwd_signals) / sizeof(fwd_signals[0]); i++) {
		/* One we were started ignoring (nohup) stays ignored, here and in PROGRAM. */
		sigaction(fwd_signals[i], NULL, &prev[i]);
		if (prev[i].sa_handler != SIG_IGN)
			sigaction(fwd_signals[i], &sa, NULL);
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		/* PROGRAM gets the dispositions and the mask we were given. */
		for (size_t i = 0; i < sizeof(fwd_signals) / sizeof(fwd_signals[0]); i++)
			sigaction(fwd_signals[i], &prev[i], NULL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		execvp(argv[0], argv);
		err = errno;
		fprintf(stderr, "p2pbuf exec: %s: %s\n", argv[0], strerror(err));
		_exit(err == ENOENT ? 127 : 126);
	}
	if (pid < 0) {
		err = errno;
		fprintf(stderr, "p2pbuf exec: fork: %s\n", strerror(err));
		if (tree_dir)
			remove_trees(tree_dir);
		return 126;
	}
	child_pid = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			status = W_EXITCODE(126, 0);
			break;
		}
	}
	child_pid = 0;
	while (waitpid(-1, NULL, WNOHANG) > 0) /* orphaned zombies */
		;
	if (tree_dir)
		remove_trees(tree_dir);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (!WIFSIGNALED(status))
		return 126;
	/* Die of the same signal; the core, if any, was PROGRAM's. */
	sig = WTERMSIG(status);
	{
		struct rlimit nocore = { 0, 0 };
		struct sigaction dfl = { .sa_handler = SIG_DFL };
		sigset_t one;

		setrlimit(RLIMIT_CORE, &nocore);
		sigemptyset(&dfl.sa_mask);
		sigaction(sig, &dfl, NULL);
		fflush(NULL);
		sigemptyset(&one);
		sigaddset(&one, sig);
		sigprocmask(SIG_UNBLOCK, &one, NULL);
		raise(sig);
	}
	return 128 + sig; /* a signal whose default is not to terminate */
}

/* $TMPDIR/p2pbuf-exec-XXXXXX for the door's trees, in @out; false if it cannot be made. */
static bool make_tree_dir(char *out, size_t len)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(out, len, "%s/p2pbuf-exec-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(out))
		return true;
	fprintf(stderr, "p2pbuf exec: warning: %s: %s: a program killed by a signal will leave\n"
			"      its temporary tree behind\n", out, strerror(errno));
	return false;
}

static void say_limits(const struct door_config *cfg)
{
	struct cli_limits l;
	bool storage = false;

	for (unsigned int i = 0; i < cfg->n; i++)
		storage |= cfg->devs[i].kind == DOOR_STORAGE;
	if (p2p_library_init())
		return;
	cli_limits_probe(0, &l);
	if (l.no_uffd)
		fprintf(stderr,
			"p2pbuf exec: note: no userfaultfd for this user%s: revoked BAR and dma-buf\n"
			"      mappings are remapped to an empty memfd instead (SIGBUS, as with the\n"
			"      kernel). For userfaultfd: run as root, or sysctl vm.unprivileged_userfaultfd=1.\n",
			l.unpriv_uffd == 0 ? " (vm.unprivileged_userfaultfd=0)" : "");
	if (l.uring_err < 0 && storage)
		fprintf(stderr,
			"p2pbuf exec: note: io_uring is unavailable (%s%s): the storage device\n"
			"      cannot be created and is left out. To have it: sysctl\n"
			"      kernel.io_uring_disabled=0, or allow io_uring_setup(2) in this sandbox.\n",
			strerror(-l.uring_err),
			l.uring_disabled > 0 ? ", kernel.io_uring_disabled is set" : "");
	if (geteuid() != 0)
		fprintf(stderr,
			"p2pbuf exec: note: not root: the door needs no privilege, but PROGRAM's own\n"
			"      checks of root (or of /dev permissions elsewhere) still apply.\n");
}

/* Append @line and a newline to the string *@buf of *@len bytes.  0 or -ENOMEM. */
static int add_line(char **buf, size_t *len, const char *line)
{
	size_t l = strlen(line);
	char *n = realloc(*buf, *len + l + 2);

	if (!n)
		return -ENOMEM;
	memcpy(n + *len, line, l);
	*len += l;
	n[(*len)++] = '\n';
	n[*len] = 0;
	*buf = n;
	return 0;
}

int cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "device", required_argument, NULL, 'd' },
		{ "connect", required_argument, NULL, 'C' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct door_config cfg;
	char err[512], preload[PATH_MAX], prog[PATH_MAX], *devices = NULL, *connect = NULL;
	size_t conlen = 0;
	const char *config = NULL;
	size_t devlen = 0;
	bool quiet = false;
	int c, ret;

	while ((c = getopt_long(argc, argv, "+c:d:C:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'd':
			if (strchr(optarg, '\n')) {
				fprintf(stderr, "p2pbuf exec: --device: one line per --device\n");
				return 2;
			}
			if (add_line(&devices, &devlen, optarg))
				return 1;
			break;
		case 'C': {
			/* A vfio-user server's socket: absolute, checked now, one a line. */
			char abs[PATH_MAX];
			struct stat st;

			if (!realpath(optarg, abs) || stat(abs, &st)) {
				fprintf(stderr, "p2pbuf exec: --connect %s: %s\n", optarg, strerror(errno));
				return 2;
			}
			if (!S_ISSOCK(st.st_mode)) {
				fprintf(stderr, "p2pbuf exec: --connect %s: not a socket\n", optarg);
				return 2;
			}
			if (add_line(&connect, &conlen, abs))
				return 1;
			break;
		}
		case 'q':
			quiet = true;
			break;
		case 'h':
			exec_usage(stdout);
			return 0;
		default:
			exec_usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "p2pbuf exec: no PROGRAM given\n");
		exec_usage(stderr);
		return 2;
	}

	/* The configuration, checked exactly as the preload library will read it. */
	if (connect && !config)
		ret = devices ? door_config_parse(&cfg, devices, strlen(devices), "--device", 1, err,
						  sizeof(err))
			      : 0;
	else
		ret = door_config_read(&cfg, config, devices, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "p2pbuf exec: %s\n", ret == -ENOMEM ? "out of memory" : err);
		return 2;
	}
	for (unsigned int i = 0; i < cfg.n; i++) {
		const struct door_dev *d = &cfg.devs[i];

		if (d->file && access(d->file, R_OK | W_OK)) {
			fprintf(stderr, "p2pbuf exec: %s: storage image %s: %s\n", d->source, d->file,
				strerror(errno));
			return 2;
		}
	}

	ret = cli_find_preload(preload, sizeof(preload));
	if (ret) {
		fprintf(stderr, "p2pbuf exec: cannot find %s (%s; set P2PBUF_PRELOAD)\n",
			PRELOAD_NAME, strerror(-ret));
		return 2;
	}
	if (which(argv[optind], prog, sizeof(prog)) && is_static_elf(prog)) {
		fprintf(stderr,
			"p2pbuf exec: warning: %s is statically linked: LD_PRELOAD cannot reach it, so\n"
			"      it sees the host's /dev and /sys (no /dev/vfio: its opens fail with ENOENT).\n",
			prog);
	}
	if (!quiet)
		say_limits(&cfg);

	/* The environment the library reads (door_config_load()). */
	if (config) {
		char abs[PATH_MAX];

		if (!realpath(config, abs)) {
			fprintf(stderr, "p2pbuf exec: %s: %s\n", config, strerror(errno));
			return 2;
		}
		setenv("P2PBUF_DOOR_CONFIG", abs, 1);
	} else {
		unsetenv("P2PBUF_DOOR_CONFIG");
	}
	if (devices)
		setenv("P2PBUF_DOOR_DEVICES", devices, 1);
	else
		unsetenv("P2PBUF_DOOR_DEVICES");
	if (connect)
		setenv("P2PBUF_DOOR_CONNECT", connect, 1);
	else
		unsetenv("P2PBUF_DOOR_CONNECT");
	{
		const char *old = getenv("LD_PRELOAD");
		char *val;

		if (old && *old) {
			if (asprintf(&val, "%s:%s", old, preload) < 0)
				return 1;
		} else {
			val = strdup(preload);
		}
		if (!val || setenv("LD_PRELOAD", val, 1))
			return 1;
		free(val);
	}
	{
		char dir[PATH_MAX];
		bool have_dir = make_tree_dir(dir, sizeof(dir));

		if (have_dir)
			setenv("P2PBUF_DOOR_TMPDIR", dir, 1);
		else
			unsetenv("P2PBUF_DOOR_TMPDIR");
		return run_child(argv + optind, have_dir ? dir : NULL);
	}
}
