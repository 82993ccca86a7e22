/*
 * kvmloop: the smallest KVM VMM that runs csvmm's benchmark BIOS images, as the baseline a userspace
 * VMM can reach on this host. Same VM set-up as csvmm (TSS and identity-map addresses, in-kernel irqchip,
 * PIT2 with a dummy speaker), 32 MiB RAM at 0 (or RAM_MIB), the 64 KiB image at 0xFFFF0000 (read-only when KVM allows)
 * and copied to 0xF0000, one vCPU in its reset state (F000:FFF0).
 *
 * Exits: port I/O is ignored (the run stops on a write to port 0xf4 or 0x604), MMIO is ignored, HLT stops;
 * anything else is printed and the program exits 1. The result line covers the KVM_RUN loop alone:
 *   kvmloop: exits=N io=N mmio=N stop=REASON seconds=S
 *
 * usage: kvmloop IMAGE [TIMEOUT_SECONDS [RAM_MIB]]      (build: gcc -O2 -Wall -o kvmloop kvmloop.c)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RAM_MIB_DEFAULT 32UL
#define RAM_MIB_MAX    3072UL            /* RAM must end below the 32-bit hole (0xC0000000) */
#define IMAGE_SIZE     0x10000UL
#define IMAGE_HIGH     0xFFFF0000UL      /* ends at 4 GiB: the reset vector 0xFFFFFFF0 is in it */
#define IMAGE_LOW      0xF0000UL         /* the legacy BIOS copy below 1 MiB */
#define TSS_ADDR       0xFEFFD000UL      /* as csvmm's Layout.TssAddress / QEMU */
#define IDENTITY_MAP   0xFEFFC000ULL     /* as csvmm's Layout.IdentityMap / QEMU */
#define PORT_DEBUG_EXIT 0xF4
#define PORT_PM1A_CNT  0x604

static void die(const char *what)
{
    fprintf(stderr, "kvmloop: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int xioctl(int fd, unsigned long request, unsigned long arg, const char *what)
{
    int r = ioctl(fd, request, arg);
    if (r < 0)
        die(what);
    return r;
}

static void read_image(const char *path, uint8_t *dst)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die(path);
    if ((unsigned long)st.st_size != IMAGE_SIZE) {
        fprintf(stderr, "kvmloop: %s is %lld bytes, not a 64 KiB BIOS image\n", path, (long long)st.st_size);
        exit(1);
    }
    for (size_t done = 0; done < IMAGE_SIZE;) {
        ssize_t n = read(fd, dst + done, IMAGE_SIZE - done);
        if (n <= 0)
            die(path);
        done += (size_t)n;
    }
    close(fd);
}

static void *map_anonymous(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        die("mmap guest memory");
    return p;
}

static void set_slot(int vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host, uint32_t flags)
{
    struct kvm_userspace_memory_region region = {
        .slot = slot, .flags = flags, .guest_phys_addr = gpa,
        .memory_size = size, .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    xioctl(vm, KVM_SET_USER_MEMORY_REGION, (unsigned long)&region, "KVM_SET_USER_MEMORY_REGION");
}

int main(int argc, char **argv)
{
    unsigned long timeout = argc > 2 ? strtoul(argv[2], NULL, 10) : 120;
    unsigned long ram_mib = argc > 3 ? strtoul(argv[3], NULL, 10) : RAM_MIB_DEFAULT;
    if (argc < 2 || argc > 4 || timeout == 0 || ram_mib < 1 || ram_mib > RAM_MIB_MAX) {
        fprintf(stderr, "usage: kvmloop IMAGE [TIMEOUT_SECONDS [RAM_MIB (1-%lu)]]\n", RAM_MIB_MAX);
        return 2;
    }
    /* Watchdog: a guest that never exits (or halts with the in-kernel LAPIC) ends the process. */
    alarm((unsigned)timeout);

    const size_t ram_size = ram_mib << 20;
    uint8_t *ram = map_anonymous(ram_size);
    uint8_t *rom = map_anonymous(IMAGE_SIZE);
    read_image(argv[1], rom);
    memcpy(ram + IMAGE_LOW, rom, IMAGE_SIZE);

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("/dev/kvm");
    if (xioctl(kvm, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION") != KVM_API_VERSION) {
        fprintf(stderr, "kvmloop: unexpected KVM API version\n");
        return 1;
    }
    int vm = xioctl(kvm, KVM_CREATE_VM, 0, "KVM_CREATE_VM");
    xioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDR, "KVM_SET_TSS_ADDR");
    uint64_t identity = IDENTITY_MAP;
    xioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, (unsigned long)&identity, "KVM_SET_IDENTITY_MAP_ADDR");
    xioctl(vm, KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    xioctl(vm, KVM_CREATE_PIT2, (unsigned long)&pit, "KVM_CREATE_PIT2");

    int readonly = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) > 0;
    set_slot(vm, 0, 0, ram_size, ram, 0);
    set_slot(vm, 1, IMAGE_HIGH, IMAGE_SIZE, rom, readonly ? KVM_MEM_READONLY : 0);

    int vcpu = xioctl(vm, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU");
    int run_size = xioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");

    unsigned long exits = 0, io = 0, mmio = 0;
    const char *stop = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!stop) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            die("KVM_RUN");
        }
        exits++;
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            io++;
            if (run->io.direction == KVM_EXIT_IO_OUT &&
                (run->io.port == PORT_DEBUG_EXIT || run->io.port == PORT_PM1A_CNT))
                stop = run->io.port == PORT_DEBUG_EXIT ? "port-0xf4" : "port-0x604";
            break;
        case KVM_EXIT_MMIO:
            mmio++;
            break;
        case KVM_EXIT_HLT:
            stop = "hlt";
            break;
        default:
            fprintf(stderr, "kvmloop: unexpected exit reason %u after %lu exits", run->exit_reason, exits);
            if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
                fprintf(stderr, " (internal error, suberror %u)", run->internal.suberror);
            fputc('\n', stderr);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("kvmloop: exits=%lu io=%lu mmio=%lu stop=%s seconds=%.6f\n", exits, io, mmio, stop, seconds);
    return 0;
}
