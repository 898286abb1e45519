/*
 * pause: the sandbox (infra) container process of the coco extension's pause bundle.
 *
 * It does nothing but wait. Orphans re-parented to it are reaped so no zombies
 * pile up in the pod's PID namespace. SIGINT and SIGTERM end it with status 0.
 * As PID 1 of a PID namespace the kernel drops every signal without a handler,
 * so explicit handlers are installed for all three signals it cares about.
 *
 * Built static by coco-extension/build.sh: gcc -static -Os.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void on_child(int sig)
{
	/* Only wakes sigsuspend(); children are reaped in main(). */
	(void)sig;
}

static int install(int sig, void (*handler)(int), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigfillset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}

int main(void)
{
	sigset_t watched, waiting;

	/*
	 * Block the watched signals while checking for work, and unblock them only
	 * inside sigsuspend(), so a signal arriving between the check and the wait
	 * is never lost.
	 */
	sigemptyset(&watched);
	sigaddset(&watched, SIGINT);
	sigaddset(&watched, SIGTERM);
	sigaddset(&watched, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &watched, &waiting) != 0 ||
	    install(SIGINT, on_stop, 0) != 0 || install(SIGTERM, on_stop, 0) != 0 ||
	    install(SIGCHLD, on_child, SA_NOCLDSTOP) != 0) {
		perror("pause: cannot set up signal handling");
		return 1;
	}
	sigdelset(&waiting, SIGINT);
	sigdelset(&waiting, SIGTERM);
	sigdelset(&waiting, SIGCHLD);

	for (;;) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (stop_requested)
			return 0;
		sigsuspend(&waiting);
	}
}
