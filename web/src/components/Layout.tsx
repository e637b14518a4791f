/** The frame of every signed-in view: sidebar navigation, collection picker, tenant, sign-out. */
import { clsx } from "clsx";
import { Copy, FolderOpen, LogOut, Menu, MessageSquareText, ScanSearch, ShieldAlert, Upload, X } from "lucide-react";
import { useState } from "react";
import { NavLink, Outlet, useLocation } from "react-router-dom";

import { useCurrentCollection } from "@/lib/collection";
import { useSession } from "@/lib/session";

import { Badge, Button, Select } from "./ui";

const NAV = [
  { to: "/collections", label: "Collections", icon: FolderOpen },
  { to: "/upload", label: "Upload", icon: Upload },
  { to: "/search", label: "Search", icon: ScanSearch },
  { to: "/ask", label: "Ask", icon: MessageSquareText },
  { to: "/dedup", label: "Dedup", icon: Copy },
  { to: "/anomalies", label: "Anomalies", icon: ShieldAlert },
];

/** The mark and the name; `compact` keeps the name for screen readers only below `sm`, where the
 * phone header needs the room for the collection picker. */
function Logo({ compact = false }: { compact?: boolean }) {
  return (
    <span className="flex shrink-0 items-center gap-2 text-base font-semibold tracking-tight text-slate-900" data-testid="logo">
      <img src="/favicon.svg" alt="" className="size-7" />
      <span className={clsx(compact && "sr-only sm:not-sr-only")}>Lookalike</span>
    </span>
  );
}

function Nav({ onNavigate }: { onNavigate?: () => void }) {
  return (
    <nav aria-label="Main">
      <ul className="space-y-1">
        {NAV.map(({ to, label, icon: Icon }) => (
          <li key={to}>
            <NavLink
              to={to}
              onClick={onNavigate}
              className={({ isActive }) =>
                clsx(
                  "flex items-center gap-3 rounded-md px-3 py-2 text-sm font-medium transition-colors",
                  isActive ? "bg-brand-50 text-brand-700" : "text-slate-700 hover:bg-slate-100",
                )
              }
            >
              <Icon className="size-4" aria-hidden />
              {label}
            </NavLink>
          </li>
        ))}
      </ul>
    </nav>
  );
}

function CollectionPicker() {
  const { collection, collections, isLoading, select } = useCurrentCollection();
  if (isLoading) return <div className="h-10 w-full max-w-48 animate-pulse rounded-md bg-slate-200" aria-hidden />;
  if (!collections.length) return null;
  return (
    <div className="flex min-w-0 flex-1 items-center justify-end gap-2">
      <label htmlFor="collection-picker" className="hidden text-sm text-slate-600 sm:block">
        Collection
      </label>
      <Select
        id="collection-picker"
        aria-label="Current collection"
        className="min-w-0 truncate sm:w-56"
        value={collection?.id ?? ""}
        onChange={(event) => select(event.target.value)}
      >
        {collections.map((c) => (
          <option key={c.id} value={c.id}>
            {c.name}
          </option>
        ))}
      </Select>
    </div>
  );
}

function Account() {
  const { state, signOut } = useSession();
  if (state.status !== "signed-in") return null;
  const { session } = state;
  return (
    <div className="flex shrink-0 items-center gap-2">
      <div className="hidden text-right text-xs leading-tight md:block">
        <div className="font-medium text-slate-900" data-testid="tenant">
          {session.tenant}
        </div>
        <div className="text-slate-500">{session.user}</div>
      </div>
      {session.auth === "off" ? (
        <Badge tone="amber">
          <span className="hidden sm:inline">demo mode · </span>auth off
        </Badge>
      ) : (
        <Button variant="ghost" size="sm" onClick={signOut} aria-label="Sign out">
          <LogOut className="size-4" aria-hidden />
          <span className="hidden sm:inline">Sign out</span>
        </Button>
      )}
    </div>
  );
}

/** Who is signed in, for the phone menu (the header has no room for it there). */
function SignedInAs() {
  const { state } = useSession();
  if (state.status !== "signed-in") return null;
  return (
    <p className="mt-3 border-t border-slate-100 px-3 pt-3 text-xs text-slate-500 md:hidden">
      Signed in as <span className="font-medium text-slate-700">{state.session.user}</span> · tenant{" "}
      <span className="font-medium text-slate-700">{state.session.tenant}</span>
    </p>
  );
}

export function Layout() {
  const [menuOpen, setMenuOpen] = useState(false);
  const location = useLocation();
  return (
    <div className="flex min-h-screen">
      <a
        href="#main"
        className="sr-only focus:not-sr-only focus:fixed focus:left-2 focus:top-2 focus:z-50 focus:rounded focus:bg-white focus:px-3 focus:py-2"
      >
        Skip to content
      </a>
      <aside className="hidden w-60 shrink-0 border-r border-slate-200 bg-white lg:block">
        {/* As tall as the window and sticky, so the navigation stays in reach on long pages. */}
        <div className="sticky top-0 h-screen overflow-y-auto px-3 py-4">
          <div className="mb-6 px-3">
            <Logo />
          </div>
          <Nav />
        </div>
      </aside>
      <div className="flex min-w-0 flex-1 flex-col">
        <header className="sticky top-0 z-30 border-b border-slate-200 bg-white/95 backdrop-blur">
          <div className="flex h-14 items-center gap-2 px-4 sm:gap-3 sm:px-6">
            <Button
              variant="ghost"
              size="sm"
              className="lg:hidden"
              aria-label={menuOpen ? "Close menu" : "Open menu"}
              aria-expanded={menuOpen}
              aria-controls="mobile-nav"
              onClick={() => setMenuOpen((open) => !open)}
            >
              {menuOpen ? <X className="size-5" aria-hidden /> : <Menu className="size-5" aria-hidden />}
            </Button>
            <div className="lg:hidden">
              <Logo compact />
            </div>
            <div className="ml-auto flex min-w-0 flex-1 items-center justify-end gap-2 sm:gap-3">
              <CollectionPicker />
              <Account />
            </div>
          </div>
          {menuOpen && (
            <div id="mobile-nav" className="border-t border-slate-200 px-3 py-3 lg:hidden">
              <Nav onNavigate={() => setMenuOpen(false)} />
              <SignedInAs />
            </div>
          )}
        </header>
        <main id="main" className="mx-auto w-full max-w-7xl flex-1 px-4 py-6 sm:px-6" key={location.pathname}>
          <Outlet />
        </main>
      </div>
    </div>
  );
}
