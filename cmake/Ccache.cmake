# Use ccache when it is installed: rebuilds after a fresh configure reuse object files.
# With precompiled headers ccache needs `pch_defines,time_macros` sloppiness and GCC's
# -fpch-preprocess; CCACHE_BASEDIR makes paths inside the checkout relative, so a fresh clone in
# another folder (as CI makes) hits the same cache. The environment is passed through the
# launcher so that it reaches the compiler invocations at build time, not just this configure.
# MICRODIT_ROOT: the checkout, where a project inside it (tests/fuzz) sets it.
if(NOT MICRODIT_ROOT)
  set(MICRODIT_ROOT "${CMAKE_SOURCE_DIR}")
endif()
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER
      "${CMAKE_COMMAND};-E;env;CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime;CCACHE_BASEDIR=${MICRODIT_ROOT};CCACHE_NOHASHDIR=1;${CCACHE_PROGRAM}")
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options(-fpch-preprocess)
  endif()
endif()
