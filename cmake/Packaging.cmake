# What an install puts next to the programs (their install() rules are in
# app/ and ui/), and the Debian package CPack builds from the build tree
# (issue 16 item 2; docs/packaging.md):
#   cpack -G DEB --config BUILD/CPackConfig.cmake -B OUTDIR
# The package installs under /usr; the config file and the systemd units go
# to the absolute paths moatd and the units name (/etc/moat/moatd.toml,
# /lib/systemd/system), whatever the prefix.
include(GNUInstallDirs)

set(_moat_pkg ${PROJECT_SOURCE_DIR}/packaging)
set(_moat_gen ${PROJECT_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${_moat_gen})

# ---- data ------------------------------------------------------------------
# The syscall groups are compiled into moatd and moatctl-full (core/policy);
# this copy is for reading, as are the example policies.
install(FILES ${PROJECT_SOURCE_DIR}/resources/syscall-groups.toml DESTINATION ${CMAKE_INSTALL_DATADIR}/moat)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/resources/policies/ DESTINATION ${CMAKE_INSTALL_DATADIR}/moat/policies
        FILES_MATCHING PATTERN "*.toml")
install(FILES ${_moat_pkg}/systemd/moatd.service ${_moat_pkg}/systemd/moatd.socket DESTINATION /lib/systemd/system)
install(FILES ${_moat_pkg}/debian/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${_moat_pkg}/debian/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides
        RENAME moat)

# ---- generated from the programs themselves --------------------------------
# The config file, the man pages and moatctl's completion are written from
# each program's --help (packaging/gen-*.sh): an option is named once, where
# it is defined. So they run the programs just built.
# Not in sanitizer and fuzz builds: they are never packaged, and running
# their programs at build time would only add a way for the build to fail.
# cmake/PackagingCheck.cmake makes cpack refuse a package whenever
# CPACK_MOAT_REFUSE says why.
if(MOAT_SANITIZE OR MOAT_TSAN OR MOAT_FUZZ)
  set(CPACK_MOAT_REFUSE "a sanitizer or fuzz build (MOAT_SANITIZE, MOAT_TSAN, MOAT_FUZZ) is not packaged")
else()
  add_custom_command(OUTPUT ${_moat_gen}/moatd.toml
    COMMAND bash ${_moat_pkg}/gen-moatd-toml.sh $<TARGET_FILE:moatd> ${_moat_gen}/moatd.toml
    DEPENDS moatd ${_moat_pkg}/gen-moatd-toml.sh ${_moat_pkg}/cli11-help.sh
    COMMENT "Writing moatd.toml from moatd --help" VERBATIM)
  add_custom_command(OUTPUT ${_moat_gen}/moatctl.bash
    COMMAND bash ${_moat_pkg}/gen-bash-completion.sh $<TARGET_FILE:moatctl> ${_moat_gen}/moatctl.bash
    DEPENDS moatctl ${_moat_pkg}/gen-bash-completion.sh ${_moat_pkg}/cli11-help.sh
    COMMENT "Writing moatctl's bash completion from moatctl --help" VERBATIM)
  # Debian wants the changelog compressed reproducibly (no name, no time).
  add_custom_command(OUTPUT ${_moat_gen}/changelog.Debian.gz
    COMMAND gzip -9n -c ${_moat_pkg}/debian/changelog > ${_moat_gen}/changelog.Debian.gz
    DEPENDS ${_moat_pkg}/debian/changelog VERBATIM)
  set(_moat_generated ${_moat_gen}/moatd.toml ${_moat_gen}/moatctl.bash ${_moat_gen}/changelog.Debian.gz)
  install(FILES ${_moat_gen}/moatd.toml DESTINATION /etc/moat)
  install(FILES ${_moat_gen}/moatctl.bash DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
          RENAME moatctl)
  install(FILES ${_moat_gen}/changelog.Debian.gz DESTINATION ${CMAKE_INSTALL_DOCDIR})

  # Man pages: help2man (Debian's help2man package) on each program's --help
  # and --version, with packaging/man/NAME.h2m for what the help cannot say.
  find_program(MOAT_HELP2MAN help2man)
  if(MOAT_HELP2MAN)
    set(_moat_manpages moatd 8 moatctl 1 moat-runtime 8)
    if(TARGET moat-console)
      list(APPEND _moat_manpages moat-console 1)
    endif()
    while(_moat_manpages)
      list(POP_FRONT _moat_manpages _prog _section)
      set(_extra)
      if(_prog STREQUAL "moatctl" OR _prog STREQUAL "moat-runtime")
        set(_extra --commands)  # a COMMANDS section from each command's --help
      endif()
      set(_page ${_moat_gen}/${_prog}.${_section}.gz)
      add_custom_command(OUTPUT ${_page}
        COMMAND bash ${_moat_pkg}/gen-manpage.sh ${MOAT_HELP2MAN} $<TARGET_FILE:${_prog}> ${_section}
                ${_moat_pkg}/man/${_prog}.h2m ${_page} ${_extra}
        DEPENDS ${_prog} ${_moat_pkg}/gen-manpage.sh ${_moat_pkg}/cli11-help.sh ${_moat_pkg}/man/${_prog}.h2m
        COMMENT "Writing ${_prog}.${_section} with help2man" VERBATIM)
      list(APPEND _moat_generated ${_page})
      install(FILES ${_page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${_section})
    endwhile()
  else()
    set(CPACK_MOAT_REFUSE
        "the man pages were not built: help2man was not found when CMake ran (packaging/moat.sh deps; configure again)")
    message(STATUS "man pages are not built: help2man not found (Debian's help2man; packaging/debian-packages.txt)")
  endif()
  add_custom_target(moat_packaging_files ALL DEPENDS ${_moat_generated})
endif()

# ---- the Debian package ----------------------------------------------------
# The Debian revision comes from packaging/debian/changelog's first entry,
# whose upstream version must be the project's (checked when cpack runs).
file(STRINGS ${_moat_pkg}/debian/changelog _moat_changelog_top LIMIT_COUNT 1)
if(NOT _moat_changelog_top MATCHES "^moat \\(([^-]+)-([^)]+)\\)")
  message(FATAL_ERROR "packaging/debian/changelog: the first line is not \"moat (VERSION-REVISION) ...\"")
endif()
set(CPACK_MOAT_CHANGELOG_VERSION ${CMAKE_MATCH_1})
set(CPACK_DEBIAN_PACKAGE_RELEASE ${CMAKE_MATCH_2})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME moat)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT "Moat maintainers <maintainers@users.noreply.r-seed-b0cf8f16.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "sandbox service that records what untrusted jobs try")
# Lines under 80 columns (Debian policy); CPack indents them and turns an
# empty line into " .".
string(JOIN "\n" CPACK_PACKAGE_DESCRIPTION
  "Moat runs untrusted server-side work (converters, link previews, user"
  "code) in a sandbox: a seccomp tier (a syscall allowlist, Landlock, a uid"
  "and a cgroup per job), a container tier (namespaces and a root built from"
  "the policy) and a vm tier (a QEMU microvm guest per job). When the sandbox"
  "stops something, it records which syscall, with which arguments, from"
  "which library, in which job and under which policy version."
  ""
  "The package holds moatd (the service, with its systemd units), moatctl"
  "(the command line client: run, investigate, replay, policy tools),"
  "moat-runtime (an OCI runtime, so podman or containerd run containers as"
  "Moat jobs) and, when the build has it, moat-console (the Qt GUI).")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The shared libraries' packages come from dpkg-shlibdeps; adduser is for
# postinst's addgroup. The vm tier needs QEMU, and mkfs.ext4 for its images.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "qemu-system-x86, e2fsprogs")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${_moat_pkg}/debian/postinst ${_moat_pkg}/debian/prerm ${_moat_pkg}/debian/postrm ${_moat_pkg}/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
    OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
set(CPACK_PRE_BUILD_SCRIPTS ${PROJECT_SOURCE_DIR}/cmake/PackagingCheck.cmake)
set(CPACK_SOURCE_GENERATOR "")
include(CPack)
