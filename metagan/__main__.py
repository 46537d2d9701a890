from metagan.cli import main

raise SystemExit(main())
