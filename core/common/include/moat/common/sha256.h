#pragma once
#include <string>
#include <string_view>

namespace moat {
// Lower-case hex SHA-256 (OpenSSL's libcrypto).
std::string sha256_hex(std::string_view data);
}
