// moat-init: pid 1 of a container-tier job. Started only by moatd: either
// executed for one job, or once as moatd's spawn helper (--spawn-helper, its
// socket at fd 3), whose copies run the same code for each job without an
// exec (moat::sandbox::SpawnHelper).
#include <cstring>

#include "moat/sandbox/container_init.h"
#include "moat/sandbox/spawn.h"

int main(int argc, char** argv) {
    if (argc == 2 && strcmp(argv[1], "--spawn-helper") == 0)
        return moat::sandbox::spawn_helper_main(3, moat::sandbox::container_init_main);
    return moat::sandbox::container_init_main();
}
