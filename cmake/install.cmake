# cmake/install.cmake -- install and export the header-only fasttrain::fasttrain target.
#
# Included from the top-level CMakeLists.txt right after the `fasttrain` target is defined.
# After `cmake --install <build> --prefix P`, an outside project uses
#
#   find_package(fasttrain CONFIG REQUIRED)        # with CMAKE_PREFIX_PATH=P
#   target_link_libraries(app PRIVATE fasttrain::fasttrain)
#
# and, for the optional components, find_package(fasttrain CONFIG REQUIRED COMPONENTS xtensor)
# with fasttrain::xtensor (likewise dist, thrust).
#
# Layout under the prefix:
#   include/fasttrain/...                           the headers
#   share/cmake/fasttrain/fasttrainConfig.cmake     finds Eigen3 3.4, ZLIB, Threads
#   share/cmake/fasttrain/fasttrainConfigVersion.cmake
#   share/cmake/fasttrain/fasttrainTargets.cmake    the exported INTERFACE target
#   share/cmake/fasttrain/fasttrain<Comp>Targets.cmake  the optional components (Dist, Xtensor,
#                                                   Thrust) this build found the dependencies of
# The package is header-only, so it goes to the architecture-independent datadir.
#
# FASTTRAIN_INSTALL (default: ON only when fasttrain is the top-level project) controls the
# rules. A parent project that pulls fasttrain in with add_subdirectory/FetchContent and
# installs+exports its own targets linking fasttrain::fasttrain sets it ON, so that
# fasttrain lands in an export set too.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

option(FASTTRAIN_INSTALL "Generate fasttrain's install rules" ${PROJECT_IS_TOP_LEVEL})
set(FASTTRAIN_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/fasttrain"
    CACHE STRING "Where to install fasttrain's CMake package files (relative to the prefix)")
mark_as_advanced(FASTTRAIN_INSTALL_CMAKEDIR)

if(FASTTRAIN_INSTALL)
  install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/fasttrain"
          DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
          FILES_MATCHING
            PATTERN "*.hpp" PATTERN "*.h" PATTERN "*.cuh" PATTERN "*.inl" PATTERN "*.ipp")

  install(TARGETS fasttrain EXPORT fasttrainTargets)
  install(EXPORT fasttrainTargets
          NAMESPACE fasttrain::
          FILE fasttrainTargets.cmake
          DESTINATION "${FASTTRAIN_INSTALL_CMAKEDIR}")

  # The optional components, each in its own export set, loaded by find_package(fasttrain
  # COMPONENTS ...) with its dependencies (cmake/fasttrainConfig.cmake.in):
  #   dist     fasttrain::dist     (MPI)                                 fasttrainDistTargets.cmake
  #   xtensor  fasttrain::xtensor  (xtensor, xtensor-blas, a BLAS)       fasttrainXtensorTargets.cmake
  #   thrust   fasttrain::thrust   (Thrust's headers, found again there) fasttrainThrustTargets.cmake
  # A component is installed when fasttrain's build defined its target (found its dependencies).
  foreach(_ft_comp IN ITEMS Dist Xtensor Thrust)
    string(TOLOWER "${_ft_comp}" _ft_target)
    if(TARGET fasttrain_${_ft_target})
      install(TARGETS fasttrain_${_ft_target} EXPORT fasttrain${_ft_comp}Targets)
      install(EXPORT fasttrain${_ft_comp}Targets
              NAMESPACE fasttrain::
              FILE fasttrain${_ft_comp}Targets.cmake
              DESTINATION "${FASTTRAIN_INSTALL_CMAKEDIR}")
    endif()
  endforeach()

  # Where this build found Thrust: only a hint for the config file's own search.
  set(FASTTRAIN_THRUST_HINT "")
  if(TARGET fasttrain_thrust)
    set(FASTTRAIN_THRUST_HINT "${FASTTRAIN_THRUST_INCLUDE_DIR}")
  endif()

  configure_package_config_file(
    "${CMAKE_CURRENT_LIST_DIR}/fasttrainConfig.cmake.in"
    "${PROJECT_BINARY_DIR}/fasttrainConfig.cmake"
    INSTALL_DESTINATION "${FASTTRAIN_INSTALL_CMAKEDIR}")
  write_basic_package_version_file(
    "${PROJECT_BINARY_DIR}/fasttrainConfigVersion.cmake"
    VERSION "${PROJECT_VERSION}"
    COMPATIBILITY SameMajorVersion
    ARCH_INDEPENDENT)
  install(FILES "${PROJECT_BINARY_DIR}/fasttrainConfig.cmake"
                "${PROJECT_BINARY_DIR}/fasttrainConfigVersion.cmake"
          DESTINATION "${FASTTRAIN_INSTALL_CMAKEDIR}")
endif()
