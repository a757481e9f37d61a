# Rules shared by every Makefile.am.
AM_CPPFLAGS = \
	-I$(top_builddir) \
	-I$(top_srcdir)/common/include \
	-I$(top_srcdir)/common/proto \
	-I$(top_srcdir)/common/utils \
	$(NULL)
AM_CFLAGS = $(WARNINGS_CFLAGS) $(SANITIZER_CFLAGS)
AM_LDFLAGS = $(SANITIZER_CFLAGS)
NULL =
