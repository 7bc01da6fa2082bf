# Run by cpack before it builds the package (CPACK_PRE_BUILD_SCRIPTS, set in
# cmake/Packaging.cmake): refuses a package lintian would reject or that
# lacks what the build could not make.
if(NOT CPACK_MOAT_CHANGELOG_VERSION STREQUAL CPACK_PACKAGE_VERSION)
  message(FATAL_ERROR "packaging/debian/changelog's first entry is for ${CPACK_MOAT_CHANGELOG_VERSION} but the "
                      "project is ${CPACK_PACKAGE_VERSION}: add a changelog entry (docs/packaging.md)")
endif()
if(CPACK_MOAT_REFUSE)
  message(FATAL_ERROR "no package: ${CPACK_MOAT_REFUSE}")
endif()
