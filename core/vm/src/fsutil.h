#pragma once
// Small file helpers shared by the vm kit's builders (not part of the API).
#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "moat/common/error.h"

namespace moat::vm::detail {

Result<std::string> read_file(const std::string& path, size_t max_bytes = 1 << 20);
// sha256 (hex) of a file's bytes, streamed.
Result<std::string> file_sha256(const std::string& path);
// mkdir -p with `mode` for the directories it creates.
Result<void> make_dirs(const std::string& path, mode_t mode = 0755);
// A temporary name next to `final_path` (same directory, so rename() is atomic).
std::string temp_name_for(const std::string& final_path);
// Bytes a file really occupies (st_blocks * 512): images are sparse.
uint64_t allocated_bytes(const struct stat& st);

}  // namespace moat::vm::detail
