#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace moat {
// Standard base64 with padding (OpenSSL's libcrypto), for binary data in JSON.
std::string base64_encode(std::string_view data);
std::optional<std::string> base64_decode(std::string_view text);  // nullopt when malformed
}  // namespace moat
