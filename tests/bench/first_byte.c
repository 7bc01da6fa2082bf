/* The vm tier's warm-start probe (tests/bench/run.sh): a static program whose
 * first system call writes one byte to stdout. The client times the request
 * to that byte's arrival, an upper bound of request -> the job's first
 * instruction (the byte still crosses the guest's port, moatd and the stdio
 * relay). Static, so no dynamic loader runs before it under TCG. */
#include <unistd.h>

int main(void) {
    (void)!write(1, "x", 1);
    return 0;
}
