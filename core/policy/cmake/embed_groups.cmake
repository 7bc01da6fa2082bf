# cmake -DIN=syscall-groups.toml -DOUT=generated.cpp -P embed_groups.cmake
# Writes the TOML as a C++ raw string literal. The delimiter cannot occur in a
# TOML file we would accept (checked below), so the literal is exact.
file(READ "${IN}" content)
string(FIND "${content}" ")MOAT_GROUPS\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )MOAT_GROUPS\"")
endif()
set(text "// Generated from ${IN} by embed_groups.cmake. Do not edit.\n")
string(APPEND text "#include <string_view>\n")
string(APPEND text "namespace moat::policy::detail {\n")
string(APPEND text "extern const std::string_view kSyscallGroupsToml;\n")
string(APPEND text "const std::string_view kSyscallGroupsToml = R\"MOAT_GROUPS(${content})MOAT_GROUPS\";\n")
string(APPEND text "}  // namespace moat::policy::detail\n")
file(WRITE "${OUT}.tmp" "${text}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
