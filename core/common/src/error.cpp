#include "moat/common/error.h"

#include <cerrno>
#include <cstring>
#include <string_view>

namespace moat {


const char* errno_name(int err) {
    const char* n = strerrorname_np(err);
    return n ? n : "";
}

int errno_from_name(std::string_view name) {
    // strerrorname_np covers every errno value glibc knows; scan its range once.
    for (int e = 1; e < 4096; ++e) {
        const char* n = strerrorname_np(e);
        if (n && name == n) return e;
    }
    return -1;
}

Error Error::sys(std::string op, int err) {
    std::string m = std::move(op);
    m += ": ";
    const char* n = errno_name(err);
    if (*n) {
        m += n;
        m += " (";
        m += std::strerror(err);
        m += ")";
    } else {
        m += std::strerror(err);
    }
    return Error{std::move(m), err};
}

}  // namespace moat
