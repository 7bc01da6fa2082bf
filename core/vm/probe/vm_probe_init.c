/* moat-vm-probe-init: pid 1 of the accelerator probe's test boot
 * (core/vm/src/accel.cpp). Reaching this program proves the kernel booted to
 * user space under the accelerator tried; it says so on the console and
 * reboots, which ends QEMU (-no-reboot). Static: the initramfs has no libc.
 * The marker must match kProbeMarker in moat/vm/accel.h. */
#include <fcntl.h>
#include <string.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
    static const char marker[] = "\nMOAT-VM-PROBE: user space reached\n";
    int fd = open("/dev/console", O_WRONLY);
    if (fd >= 0) {
        (void)!write(fd, marker, sizeof marker - 1);
        close(fd);
    }
    reboot(RB_AUTOBOOT);
    return 0;
}
