// moat-init: pid 1 of a container-tier job. Started only by moatd.
#include "moat/sandbox/container_init.h"

int main() { return moat::sandbox::container_init_main(); }
