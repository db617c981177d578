"""Connection statistics and diagnosis (docs/protocol.md §10, docs/diagnosis.md): the desktop's own figures
(``collector``, ``transport``), the pages' ``stats`` checked (``page``), the verdict (``diagnosis``), and how they
are shown (``report``, ``status``)."""
