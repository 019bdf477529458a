from aiodock.cli.main import main

raise SystemExit(main())
