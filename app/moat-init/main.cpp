// moat-init: pid 1 of a container-tier job. Started only by moatd: either
// executed for one job, or once as moatd's spawn helper (--spawn-helper, its
// socket at fd 3), whose copies run the same code for each job without an
// exec (moat::sandbox::SpawnHelper).
#include <cstring>
#include <string>

#include "moat/sandbox/container_init.h"
#include "moat/sandbox/spawn.h"

int main(int argc, char** argv) {
    if ((argc == 2 || argc == 3) && strcmp(argv[1], "--spawn-helper") == 0) {
        // Without the template each init builds its /dev itself: slower, not less safe.
        std::string note;
        if (argc == 3)
            if (std::string why = moat::sandbox::make_dev_template(argv[2]); !why.empty()) note = "no /dev template: " + why;
        return moat::sandbox::spawn_helper_main(3, moat::sandbox::container_init_main, note.c_str());
    }
    return moat::sandbox::container_init_main();
}
