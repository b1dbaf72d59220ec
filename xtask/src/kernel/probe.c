/* A static /init that exercises what the guest kernel config promises, one line per check:
 * "ok <name>" or "FAIL <name>: <why>", then "probe: done" and a reboot. Built by the boot
 * tests with `gcc -static`; the host side attaches the devices it looks for. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/reboot.h>
#include <linux/seccomp.h>
#include <linux/vm_sockets.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

static void report(const char *name, int ok, const char *why) {
    if (ok)
        printf("ok %s\n", name);
    else
        printf("FAIL %s: %s (errno %d %s)\n", name, why, errno, strerror(errno));
    fflush(stdout);
}

#define CHECK(name, expr) report(name, (expr), #expr)

static int read_file(const char *path, char *buf, size_t len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return 0;
}

/* Whether the space-separated list `list` holds `word`. */
static int has_word(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == 0))
            return 1;
    return 0;
}

static int mkdir_mount(const char *src, const char *dst, const char *type, const char *opts) {
    mkdir(dst, 0755);
    return mount(src, dst, type, 0, opts) == 0;
}

/* Prints "virtio <device id> <driver>" for every virtio device, for the host to compare. */
static void list_virtio(void) {
    DIR *d = opendir("/sys/bus/virtio/devices");
    if (!d) {
        report("virtio bus", 0, "opendir /sys/bus/virtio/devices");
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[512], id[32] = "?", drv[256] = "none";
        snprintf(path, sizeof path, "/sys/bus/virtio/devices/%s/device", e->d_name);
        read_file(path, id, sizeof id);
        id[strcspn(id, "\n")] = 0;
        snprintf(path, sizeof path, "/sys/bus/virtio/devices/%s/driver", e->d_name);
        char link[256];
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0) {
            link[n] = 0;
            char *slash = strrchr(link, '/');
            snprintf(drv, sizeof drv, "%s", slash ? slash + 1 : link);
        }
        printf("virtio %s %s\n", id, drv);
    }
    closedir(d);
    fflush(stdout);
}

static int in_child(int (*fn)(void)) {
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn() ? 0 : 1);
    int status;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

static int namespaces(void) {
    return unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID |
                   CLONE_NEWNET | CLONE_NEWCGROUP) == 0;
}

static int seccomp_filter(void) {
    struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = {.len = 1, .filter = &allow};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

static int socket_ok(int family, int type) {
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

int main(void) {
    char buf[4096];
    CHECK("proc", mkdir_mount("proc", "/proc", "proc", NULL));
    CHECK("sysfs", mkdir_mount("sysfs", "/sys", "sysfs", NULL));
    CHECK("devtmpfs", mkdir_mount("devtmpfs", "/dev", "devtmpfs", NULL));
    list_virtio();

    /* Block device with the host-made ext4 image, then overlayfs over it with a tmpfs upper. */
    CHECK("ext4 on virtio-blk", mkdir_mount("/dev/vda", "/lower", "ext4", "ro"));
    CHECK("ext4 contents", read_file("/lower/hello", buf, sizeof buf) == 0 &&
                               strcmp(buf, "from-host\n") == 0);
    CHECK("tmpfs", mkdir_mount("tmpfs", "/t", "tmpfs", "mode=0755"));
    int fd = open("/t/x", O_CREAT | O_WRONLY, 0644);
    CHECK("tmpfs trusted xattr", fd >= 0 && fsetxattr(fd, "trusted.boxlite", "1", 1, 0) == 0);
    close(fd);
    mkdir("/t/upper", 0755);
    mkdir("/t/work", 0755);
    CHECK("overlayfs", mkdir_mount("overlay", "/merged", "overlay",
                                   "lowerdir=/lower,upperdir=/t/upper,workdir=/t/work"));
    fd = open("/merged/hello", O_WRONLY | O_APPEND);
    CHECK("overlayfs copy-up", fd >= 0 && write(fd, "more\n", 5) == 5 && close(fd) == 0 &&
                                   read_file("/t/upper/hello", buf, sizeof buf) == 0 &&
                                   strcmp(buf, "from-host\nmore\n") == 0);

    /* Console, entropy and network devices. */
    fd = open("/dev/hvc0", O_WRONLY | O_NOCTTY);
    CHECK("hvc0", fd >= 0 && write(fd, "boxlite-hvc\n", 12) == 12);
    close(fd);
    CHECK("virtio rng", read_file("/sys/class/misc/hw_random/rng_current", buf, sizeof buf) == 0 &&
                            strncmp(buf, "virtio_rng", 10) == 0);
    fd = open("/dev/hwrng", O_RDONLY);
    CHECK("hwrng read", fd >= 0 && read(fd, buf, 16) == 16);
    close(fd);
    CHECK("eth0", access("/sys/class/net/eth0", F_OK) == 0);

    /* Sockets and the file-descriptor syscalls runtimes rely on. */
    CHECK("AF_UNIX", socket_ok(AF_UNIX, SOCK_STREAM));
    CHECK("AF_INET", socket_ok(AF_INET, SOCK_STREAM));
    CHECK("AF_INET6", socket_ok(AF_INET6, SOCK_STREAM));
    CHECK("AF_VSOCK", socket_ok(AF_VSOCK, SOCK_STREAM));
    CHECK("epoll", epoll_create1(EPOLL_CLOEXEC) >= 0);
    CHECK("eventfd", eventfd(0, EFD_CLOEXEC) >= 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    CHECK("signalfd", signalfd(-1, &set, SFD_CLOEXEC) >= 0);
    CHECK("timerfd", timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC) >= 0);
    CHECK("inotify", inotify_init1(IN_CLOEXEC) >= 0);
    struct {
        struct file_handle fh;
        unsigned char bytes[128];
    } handle = {.fh.handle_bytes = 128};
    int mount_id;
    CHECK("fhandle", name_to_handle_at(AT_FDCWD, "/lower/hello", &handle.fh, &mount_id, 0) == 0);
    CHECK("futex", syscall(SYS_futex, &mount_id, 1 /* FUTEX_WAKE */, 1, NULL, NULL, 0) >= 0);
    CHECK("devpts", mkdir_mount("devpts", "/dev/pts", "devpts", "ptmxmode=0666,newinstance"));
    CHECK("pty", posix_openpt(O_RDWR | O_NOCTTY) >= 0);
    CHECK("mqueue", mkdir_mount("mqueue", "/dev/mqueue", "mqueue", NULL));

    /* Isolation: namespaces, cgroup v2 controllers, seccomp filters. */
    CHECK("namespaces", in_child(namespaces));
    CHECK("cgroup2", mkdir_mount("cgroup2", "/sys/fs/cgroup", "cgroup2", NULL));
    CHECK("cgroup controllers",
          read_file("/sys/fs/cgroup/cgroup.controllers", buf, sizeof buf) == 0 &&
              has_word(buf, "cpuset") && has_word(buf, "cpu") && has_word(buf, "memory") &&
              has_word(buf, "pids"));
    CHECK("seccomp filter", in_child(seccomp_filter));

    printf("probe: done\n");
    fflush(stdout);
    sync();
    reboot(LINUX_REBOOT_CMD_RESTART);
    return 1;
}
